"""Learning: enrolment and unlocking, the watch clock, topic tests, and each school's view of its progress."""
