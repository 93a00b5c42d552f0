"""Speed measurements and the GPU check: ``python -m benchmarks.NAME``. They import the product
(and tests.fixtures); nothing in the product imports them."""
