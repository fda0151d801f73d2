"""Runs the unittest suite and writes JUnit XML to reports/junit.xml.

Standard library only: a tiny JUnit writer over unittest's result.
Exit status is non-zero when a test fails or errors.
"""

import os
import sys
import time
import unittest
from xml.sax.saxutils import quoteattr, escape


class RecordingResult(unittest.TextTestResult):
    """A text result that also records each test's outcome and duration."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.records = []
        self._started = 0.0

    def startTest(self, test):
        self._started = time.monotonic()
        super().startTest(test)

    def _record(self, test, kind, detail=""):
        self.records.append((test, kind, detail, time.monotonic() - self._started))

    def addSuccess(self, test):
        super().addSuccess(test)
        self._record(test, "ok")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record(test, "failure", self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._record(test, "error", self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._record(test, "skipped", reason)


def junit_xml(records):
    """The JUnit XML document for `records`."""
    failures = sum(1 for r in records if r[1] == "failure")
    errors = sum(1 for r in records if r[1] == "error")
    skipped = sum(1 for r in records if r[1] == "skipped")
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<testsuites>"]
    lines.append(
        '<testsuite name="unittest" tests="%d" failures="%d" errors="%d" skipped="%d">'
        % (len(records), failures, errors, skipped)
    )
    for test, kind, detail, seconds in records:
        cls = type(test).__module__ + "." + type(test).__name__
        attrs = "classname=%s name=%s time=\"%.3f\"" % (
            quoteattr(cls), quoteattr(test._testMethodName), seconds)
        if kind == "ok":
            lines.append("<testcase %s/>" % attrs)
        else:
            tag = {"failure": "failure", "error": "error", "skipped": "skipped"}[kind]
            first = detail.strip().splitlines()[-1] if detail.strip() else kind
            lines.append("<testcase %s><%s message=%s>%s</%s></testcase>"
                         % (attrs, tag, quoteattr(first), escape(detail), tag))
    lines.append("</testsuite>")
    lines.append("</testsuites>")
    return "\n".join(lines) + "\n"


def main():
    suite = unittest.defaultTestLoader.discover(".", pattern="test_*.py")
    runner = unittest.TextTestRunner(resultclass=RecordingResult, verbosity=2)
    result = runner.run(suite)
    os.makedirs("reports", exist_ok=True)
    with open(os.path.join("reports", "junit.xml"), "w", encoding="utf-8") as f:
        f.write(junit_xml(result.records))
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
