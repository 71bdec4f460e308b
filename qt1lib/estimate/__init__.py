"""T1 estimators: lookup table (point estimate), MAP with posterior, Cramer-Rao bound."""
