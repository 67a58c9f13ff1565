"""What the harness's server processes share: a context manager that never leaks one."""

from __future__ import annotations

from typing import Self


class Server:
    """Subclasses define start() -> Self and close() (stop, then delete everything)."""

    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()  # a half-started server is stopped and its directory removed
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()
