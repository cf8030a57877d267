"""Training of SCAM networks; produces checkpoints through `models.save_checkpoint`."""
