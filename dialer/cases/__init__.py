"""Cases: one per debtor, worked as a whole — status with history, notes, payments, promises
to pay and the timeline of every contact."""
