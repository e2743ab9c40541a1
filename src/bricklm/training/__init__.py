"""The training loop and what it leans on.

trainer.py      the loop: batches, the optimiser step, evaluation, logging, checkpoints, stopping cleanly
callbacks.py    what the loop carries and shows its callbacks; early stopping, snapshots, budgets
console.py      the lines a run prints: progress bars, time left, advice on long evaluations
optim.py        AdamW or Muon, the learning-rate schedule, a moving average of the weights
datasets.py     a prepared corpus as batches and losses
resume.py       what must match to resume, and what goes back where
interrupts.py   Ctrl-C and SIGTERM: finish the step, save, exit
distributed.py  several processes with torch.distributed (DDP, FSDP)
hardware.py     the device, threads, memory estimates and the kernel tuner
health.py       the numbers that say whether a network is set up right; log_health's callback
"""
