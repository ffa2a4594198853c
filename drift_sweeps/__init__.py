"""drift_sweeps: sweeps over kernels, bandwidth schedules and drift operators for generative drifting."""

__version__ = "0.1.0"
