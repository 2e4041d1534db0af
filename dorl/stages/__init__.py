"""The stage graph (`graph`): which stages a run has, what each reads and writes, how each is called."""
