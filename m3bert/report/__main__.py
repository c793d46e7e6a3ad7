"""``python -m m3bert.report``: bad input ends with one line and exit status 2, as every entry point."""

from m3bert.common.errors import reports_errors
from m3bert.report.cli import main

if __name__ == "__main__":
    reports_errors(main)()
