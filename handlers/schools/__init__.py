"""Schools: the directory, rosters, approvals, the school console and its exports."""
