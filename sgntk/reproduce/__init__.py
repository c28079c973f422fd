"""Paper reproductions, one module per study (``sgntk reproduce <study>``).

* :mod:`sgntk.reproduce.eilers2024` -- Eilers, Memmesheimer & Goedeke (NeurIPS 2024): trained
  finite networks vs. (SG-)NTK kernel regression, Figs. 1, 2, 3 and B.2-B.4.
"""
