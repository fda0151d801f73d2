//! The deploy room: progressive delivery. The edge proxy splits traffic
//! between releases and measures it, the process runtime supervises service
//! instances, analysis judges a release on measured signals, and the
//! controller drives each deployment as a durable state machine.

pub mod analysis;
pub mod controller;
pub mod proxy;
pub mod runtime;
