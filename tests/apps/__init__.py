"""Apps the task tests run (listed in the test configs as ``apps.demo``)."""
