"""User-facing errors: the CLI prints these as one line and exits non-zero, never a traceback."""


class TrainerError(Exception):
    """Bad input or an unmet precondition that the user can fix (message says how)."""

    exit_code = 2


class AndonStop(TrainerError):
    """The Andon cord: training stopped by a guard (non-finite loss or gradient)."""

    exit_code = 3

    def __init__(self, step: int, what: str, value: float):
        self.step, self.what, self.value = step, what, value
        super().__init__(
            f"training stopped by guard at step {step}: non-finite {what} ({value}); "
            "the last good checkpoint was kept"
        )
