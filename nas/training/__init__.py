"""One network trained once: its settings, augmentation, loop, checkpoints, device plan."""
