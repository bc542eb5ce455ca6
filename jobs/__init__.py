"""Background work: jobs recorded in the database, executed by Huey workers, retried, never lost."""
