"""Collection reports: contact, promise, recovery, roll and agent figures by day, week, month."""
