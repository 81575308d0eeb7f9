def gradient_fidelity(*a, **k): raise NotImplementedError
