"""The selection: the OT potentials, the fit, the scoring, the bounded top-k, the artifact, resumable state."""
