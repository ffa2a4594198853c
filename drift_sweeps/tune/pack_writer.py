"""The results writer of a packed sweep (`pack: P`): a Tune trial is a pack of configurations, each with its
own id (`adapter.member_id`), config file and row.  A configuration's row is written when the pack reports
that it finished (so an interrupted pack keeps the rows of its finished configurations); a pack that fails
for good records its unfinished configurations as errors.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from ray.tune.experiment import Trial

from ..spine import record
from .adapter import CURVES_KEY, MEMBER_KEY, PACK_PARAM, SUMMARY_KEY, member_id
from .writer import ResultsWriter, _TrialState, error_message, log


class PackWriter(ResultsWriter):
    """ResultsWriter for Tune trials that each run a pack of configurations (`packs[config[PACK_PARAM]]`)."""

    def __init__(self, *args: Any, packs: list[list[dict]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.packs = packs
        self._written: dict[str, set[int]] = {}  # Tune trial id -> indices of its configurations with a row

    def _members(self, trial: Trial) -> list[tuple[str, Mapping[str, Any]]]:
        return [(member_id(trial.trial_id, j), p) for j, p in enumerate(self.packs[int(trial.config[PACK_PARAM])])]

    def ids_of(self, trials: list) -> set[str]:
        return {tid for t in trials for tid, _ in self._members(t)}

    def on_trial_start(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        """Record every configuration's full config before the pack trains."""
        self._state[trial.trial_id] = _TrialState()
        self._written[trial.trial_id] = set()
        for tid, params in self._members(trial):
            self._store(self.folder.write_config, tid, params, self.space.resolve(params).to_dict())

    def on_trial_result(self, iteration: int, trials: list, trial: Trial, result: dict, **info: Any) -> None:
        """One configuration of the pack finished: write its row."""
        super().on_trial_result(iteration, trials, trial, result, **info)
        if MEMBER_KEY not in result:
            return
        j = int(result[MEMBER_KEY])
        st = _TrialState(context=self._st(trial).context, curves=result.get(CURVES_KEY))
        self._write(trial, st, result[SUMMARY_KEY], error=None, attempts=1 + trial.num_failures,
                    member=self._members(trial)[j])
        self._written.setdefault(trial.trial_id, set()).add(j)

    def on_trial_recover(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        """A failed pack will be retried from scratch: its rows so far are replaced as it finishes again."""
        super().on_trial_recover(iteration, trials, trial, **info)
        self._written[trial.trial_id] = set()

    def on_trial_complete(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        """Every configuration reported its row when it finished; nothing is left to write."""
        missing = len(self._members(trial)) - len(self._written.pop(trial.trial_id, set()))
        if missing:
            log.info("pack %s ended with %d configuration(s) unfinished; they run again on resume",
                     trial.trial_id, missing)
        self._state.pop(trial.trial_id, None)

    def on_trial_error(self, iteration: int, trials: list, trial: Trial, **info: Any) -> None:
        """A pack that failed for good: its unfinished configurations are recorded as errors."""
        written = self._written.pop(trial.trial_id, set())
        st = self._state.pop(trial.trial_id, _TrialState())
        if not self.recording:
            log.info("pack %s ended during the interrupt; its unfinished configurations run again on resume",
                     trial.trial_id)
            return
        if self.lost_before_start(trial):
            return
        message: Optional[str] = None
        for j, member in enumerate(self._members(trial)):
            if j in written:
                continue
            message = message or error_message(trial)
            cfg = self.space.resolve(member[1])
            summary = record.summary(record.ERROR, {}, convergence_time=None, n_samples=cfg.n_samples,
                                     wall_time_s=st.time_total_s, device_used=st.context.get("device_used"),
                                     threads=st.context.get("threads"))
            self._write(trial, _TrialState(context=st.context), summary, error=message,
                        attempts=max(1, trial.num_failures), member=member)
