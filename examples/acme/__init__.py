"""The ``acme`` example package: workflow functions (:mod:`.steps`) and an app agents call (:mod:`.ops`)."""
