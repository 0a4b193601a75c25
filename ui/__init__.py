"""Qt dialogs, built in code (no .ui files to compile)."""
