"""What a run spent: steps, time, and who answered what (H, the facts, X's teacher, W, ground truth).

    from oversight.amplification.accounting import Accounting
    acct = Accounting(); acct.expert_calls += 32      # the training loop counts; checkpoints keep it whole

Every field is a counter the results row reports; a checkpoint saves them all (``dataclasses.asdict``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Accounting:
    steps: int = 0
    seconds: float = 0.0  # training wall time (evaluation excluded)
    questions_trained: int = 0
    expert_calls: int = 0  # questions H (the scripted expert) answered, each one transcript
    gt_labels_used: int = 0  # ground-truth answers of non-primitive questions used for training
    primitive_answers: int = 0  # subquestions answered by the environment from the facts
    teacher_answers: int = 0  # subquestions answered by X's teacher copy
    weak_answers: int = 0  # weak modes: targets and subquestions answered by the weak supervisor W
    self_from_step: int = 0  # amplified-weak+self: the step X's teacher took over from W (0: not yet)
    switch_expert_calls: int = 0  # amplified-weak+self: H's decompositions spent deciding that switch
    switch_votes: int = 0  # amplified-weak+self: evaluations in a row at which X's teacher composed better than W
    hprime_updates: int = 0
    hprime_warmup_steps: int = 0  # amplify-learned: steps spent training H' before X started
    dont_know_targets: int = 0  # amplify modes: questions Amplify(X) answered DONT_KNOW (not trained on)
    decisions_cached: int = 0  # amplify-learned: H' decisions looked up in the cache / computed
    decisions_computed: int = 0
    diverged_at_step: int = 0  # the step whose loss or gradient was not finite (0: none); training stopped there
