"""``python -m m3bert.report``: bad input ends with one line and exit status 2, as every entry point."""

from m3bert.common.errors import reports_errors
from m3bert.report import cli


def main():
    """The CLI under this module's name, so that an error line starts ``m3bert.report: error:``."""
    return cli.main()


if __name__ == "__main__":
    reports_errors(main)()
