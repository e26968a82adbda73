"""Errors that reach a user as one line (the CLI maps them to exit status 2)."""


class UserError(Exception):
    """Something the user can fix; its message is shown as is, without a traceback."""


class ConfigError(UserError):
    """A setting is missing or invalid; the message names the setting."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem
