"""The console: the bureau's staff workbench and the petitioners' page."""
