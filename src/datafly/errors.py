"""Typed errors.

DataflyError
├── ConfigError          a config file that cannot be used (lists every problem)
├── BadRequest           a client request the gateway refuses (carries the HTTP status)
├── InvalidEvent         an event the pipeline cannot take (the pure core's; the gateway answers 400)
├── InvalidId            an id a user named that no backend could have issued (a 400)
└── StorageUnavailable   the storage behind the gateway cannot be reached right now
"""

from __future__ import annotations


class DataflyError(Exception):
    pass


class ConfigError(DataflyError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class BadRequest(DataflyError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class InvalidEvent(DataflyError):
    """What is wrong with an event, in words a sender can act on (``str(exc)``)."""

    @property
    def message(self) -> str:
        return str(self)


class InvalidId(DataflyError, ValueError):
    pass


class StorageUnavailable(DataflyError):
    pass
