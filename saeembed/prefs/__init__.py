"""Preference data: reading pairs (`pairs`), and, built on the concept store, the WIMHF-style
analysis of which concepts annotators reward or punish."""
