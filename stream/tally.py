"""Frames done per task, for the progress bar of ``stream.scale``. Under Ray this is an actor: its
own worker process, which imports only this module (not torch)."""


class Tally:
    """Frames done per task, as the tasks report them. A task tried again reports from 0: its
    count is the most any of its tries reached, so the total never goes back."""

    def __init__(self):
        self.done: dict = {}

    def report(self, key: tuple[int, int], frames: int) -> None:
        self.done[key] = max(self.done.get(key, 0), frames)

    def total(self) -> int:
        return sum(self.done.values())
