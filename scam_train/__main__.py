"""`python -m scam_train` (what `torchrun -m scam_train fit ...` runs on each process)."""
from .cli import main

main()
