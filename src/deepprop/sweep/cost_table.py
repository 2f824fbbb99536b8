"""Measured speed of the sweep engine, read by :mod:`deepprop.sweep.cost`.

Written by `benchmarks/bench_sweep.py --write-cost-table` (one run per width; rows of the same shape are
replaced): do not edit by hand. Last run 2026-12-06T21:08:30+00:00: python benchmarks/bench_sweep.py --width
32 --depths 2 --optimizers sgd --networks 2 --rounds 1 --threads 1 --peers  --clock cpu --write-cost-table
src/deepprop/sweep/cost_table.py
"""

MACHINE = 'cpu (AMD EPYC, 2 cores)'
DATE = '2026-12-06'

ROWS = [{'width': 32,
  'keep_rate': 0.9,
  'activation': 'tanh',
  'batch_size': 128,
  'networks': 2,
  'threads': 1,
  'depth': 2,
  'optimizer': 'sgd',
  'engine_fraction': 0.2945,
  'engine_gflops': 11.1207,
  'bmm_gflops': 37.7626,
  'bmm_square_gflops': 34.6416,
  'engine_network_steps_per_s': 801.3597,
  'clock': 'cpu',
  'load_average': 4.91,
  'date': '2026-12-06'}]
