"""Personal data (PIPL): what each table holds of a student; notice and consent, a copy, deletion, retention."""
