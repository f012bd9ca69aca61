"""Lockstep batching of sequential code: many threads that each ask for one small lower-level batch at a time
(scipy's L-BFGS-B and the compass search that polish every search, `search_de.finish_search`) hand their requests to
one `Rendezvous`, which waits until every running thread has asked, answers all of them with one call, and lets each
thread go on with its own part of the answer.

The answer a thread gets does not depend on what the others asked (the lower level solves every candidate alone),
so the results are those of running the tasks one after another; only the number of calls changes, from one per
request to one per round (one kernel launch per round on a GPU, one OpenMP loop over every request on the CPU).
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Sequence

__all__ = ["Rendezvous"]


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class Rendezvous:
    """``Rendezvous(solve).run(tasks, workers)``: ``solve(requests) -> answers`` answers a round of requests (a list,
    one answer per request, in order); each task is ``task(ask) -> result`` and calls ``ask(request)``, which blocks
    until its round is answered and returns its answer."""

    def __init__(self, solve: Callable[[list[Any]], Sequence[Any]]):
        self._solve = solve
        self._cv = threading.Condition()
        self._running = 0
        self._waiting: dict[int, Any] = {}
        self._answers: dict[int, Any] = {}
        self.rounds = 0

    def run(self, tasks: Sequence[Callable[[Callable[[Any], Any]], Any]], workers: int) -> list[Any]:
        """Run every task on one of ``workers`` threads; their results in the tasks' order. A task that raises does
        not stop the others; the first such error (in task order) is raised once all have ended."""
        results: list[Any] = [None] * len(tasks)
        errors: dict[int, BaseException] = {}
        queue = iter(range(len(tasks)))
        take = threading.Lock()
        self._running = n = max(1, min(int(workers), len(tasks)))

        def worker(token: int) -> None:
            def ask(request: Any) -> Any:
                return self._ask(token, request)
            try:
                while True:
                    with take:
                        i = next(queue, None)
                    if i is None:
                        return
                    try:
                        results[i] = tasks[i](ask)
                    except BaseException as e:  # noqa: BLE001 - re-raised below, after every task has ended
                        errors[i] = e
            finally:
                self._leave()

        threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if errors:
            raise errors[min(errors)]
        return results

    def _ask(self, token: int, request: Any) -> Any:
        with self._cv:
            self._waiting[token] = request
            if len(self._waiting) == self._running:
                self._answer_round()
            while token not in self._answers:
                self._cv.wait()
            answer = self._answers.pop(token)
        if isinstance(answer, _Failure):
            raise answer.error
        return answer

    def _leave(self) -> None:
        with self._cv:
            self._running -= 1
            if self._waiting and len(self._waiting) == self._running:
                self._answer_round()

    def _answer_round(self) -> None:
        """Answer every waiting request with one `solve` call (the lock is held: every running thread waits)."""
        tokens, requests = list(self._waiting), list(self._waiting.values())
        self._waiting = {}
        self.rounds += 1
        try:
            answers = list(self._solve(requests))
            if len(answers) != len(requests):
                raise RuntimeError(f"solve answered {len(answers)} of {len(requests)} requests")
            self._answers.update(zip(tokens, answers))
        except BaseException as e:  # noqa: BLE001 - every waiting thread re-raises it
            self._answers.update((tok, _Failure(e)) for tok in tokens)
        finally:
            self._cv.notify_all()
