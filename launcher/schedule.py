"""Warm-up never spends an optimizer step at learning rate 0.

transformers' schedules with warm-up return `step / warmup` at step 0, so the first optimizer step always
runs at learning rate 0, and a warm-up ratio rounds up to at least one whole step (`ceil(0.03 x 12) = 1`):
a 12-step run trains 11. The job shifts the schedule by one step: step k gets the factor the stock schedule
gives step k + 1, over a horizon one step longer, so the first step already moves the weights (a one-step
warm-up is then no warm-up at all) and the last step ends where the stock schedule would have.
"""

from __future__ import annotations


def shift_schedule(trainer) -> None:
    """Make `trainer` build its learning-rate schedule shifted by one step (see the module docstring)."""
    stock = trainer.create_scheduler

    def create_scheduler(num_training_steps: int, optimizer=None):
        if trainer.lr_scheduler is not None:
            return trainer.lr_scheduler
        sched = stock(num_training_steps + 1, optimizer)
        lambdas = getattr(sched, "lr_lambdas", None)
        if lambdas is None or getattr(sched, "last_epoch", 0) != 0:
            return sched  # not a LambdaLR (or already stepped): leave it as transformers made it
        sched.lr_lambdas = [lambda step, f=f: f(step + 1) for f in lambdas]
        for group, base, f in zip(
            sched.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas, strict=True
        ):
            group["lr"] = base * f(0)
        sched._last_lr = [g["lr"] for g in sched.optimizer.param_groups]
        return sched

    trainer.create_scheduler = create_scheduler
