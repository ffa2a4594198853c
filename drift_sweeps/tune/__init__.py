"""Everything of Ray Tune in one place: the trainable and its search space (`adapter`), the driver-side
callbacks (`writer`: Parquet files, `progress`: progress lines, `live`: TensorBoard / Optuna / dashboard),
joining or starting Ray (`session`) and the one Ray internal we rely on (`ray_compat`).

Importing this package imports no Ray; its modules do.
"""
