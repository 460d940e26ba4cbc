"""CI/CD for mlci: generated GitHub Actions and GitLab CI workflows, the steps they run
(`mlci ci run STEP`, the same on a laptop), CI environment detection, and dispatch of the
sweep workflow through the code host's API."""
