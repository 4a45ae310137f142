"""What every training run does around its learning loop, whichever runner feeds the learner.

``RunLoop`` holds the parts ``striata train`` shares between the Ray actor pipeline
(``striata.train.Training``) and the single-device runner (``striata.train_device``): the progress
bar, evaluations of the deterministic policy (by time and by env steps, with
``eval.stop_at_success``), periodic checkpoints, and the first-signal-finishes-cleanly stop.
Subclasses set ``config``, ``run_dir``, ``console``, ``trainer``, ``eval_env``, ``counters`` and
``writer`` and call ``periodic`` once per loop turn.
"""

from __future__ import annotations

import signal
import time
from dataclasses import asdict
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from striata.learner.trainer import evaluate
from striata.run_dir import prune_checkpoints


class RunLoop:
    config: Any
    run_dir: Any
    console: Any
    trainer: Any
    eval_env: Any
    counters: Any
    writer: Any

    def _init_loop(self) -> None:
        self.evaluations: list[dict[str, float]] = []
        self._stop = False
        self._last_eval = self._last_checkpoint = time.monotonic()

    def progress_bar(self) -> tuple[Progress, TaskID]:
        """The run's progress bar (env steps of ``total_env_steps``) and its task, not started yet."""
        progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"), console=self.console,
        )  # fmt: skip
        bar = progress.add_task(
            self.config.name, total=self.config.total_env_steps, completed=self.counters.env_steps, info=""
        )
        return progress, bar

    def handle_signals(self) -> dict[int, Any]:
        """First Ctrl-C or SIGTERM: finish the loop, evaluate and checkpoint; a second Ctrl-C stops now.
        Returns the previous handlers, for ``restore_signals``."""
        return {sig: signal.signal(sig, self._request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}

    @staticmethod
    def restore_signals(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def periodic(self, now: float) -> None:
        """Evaluate and checkpoint when they are due."""
        if now - self._last_eval >= self.config.eval.every_s or self._eval_due_by_steps():
            self._evaluate()
            self._last_eval = now
        if now - self._last_checkpoint >= self.config.checkpoint_every_s:
            self._checkpoint()
            self._last_checkpoint = now

    def _eval_due_by_steps(self) -> bool:
        every = self.config.eval.every_env_steps
        last = self.evaluations[-1]["env_steps"] if self.evaluations else 0
        return every is not None and self.counters.env_steps - last >= every

    def _evaluate(self) -> None:
        result = evaluate(self.trainer, self.eval_env, self.config.eval.episodes)
        result["env_steps"] = self.counters.env_steps
        result["minutes"] = round(self.counters.seconds / 60, 2)
        self.evaluations.append(result)
        for key in ("success", "return", "length"):
            self.writer.add_scalar(f"eval/{key}", result[key], self.counters.env_steps)
        self.console.print(
            f"eval @ {self.counters.env_steps} steps, {result['minutes']} min: "
            f"success {result['success']:.2f}, return {result['return']:.2f}, length {result['length']:.1f}"
        )
        target = self.config.eval.stop_at_success
        if target is not None and result["success"] >= target and not self._stop:
            self.console.print(f"eval success {result['success']:.2f} >= stop_at_success {target}: stopping")
            self._stop = True

    def _checkpoint(self) -> None:
        self.trainer.save(
            self.run_dir / "checkpoints" / f"ckpt_{self.counters.env_steps}.pt",
            {"counters": asdict(self.counters), "replay_size": self.trainer.replay_size()},
        )
        prune_checkpoints(self.run_dir)

    def _request_stop(self, signum: int, _frame: Any) -> None:
        if self._stop and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self._stop = True
        self.console.print("[yellow]stopping: finishing with an evaluation and a checkpoint")

    def _done(self, start: float) -> bool:
        config = self.config
        if self._stop or self.counters.env_steps >= config.total_env_steps:
            return True
        return config.max_minutes is not None and time.monotonic() - start >= config.max_minutes * 60
