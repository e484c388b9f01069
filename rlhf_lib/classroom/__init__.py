"""A class labels pairs together: one server, one SQLite store, and the class's reward model trained from it.

    python -m rlhf_lib classroom serve --db class.db --port 8000     students open the printed address
    python -m rlhf_lib classroom train --db class.db --out runs/class

    store.py      the SQLite store: pairs, who was shown what, labels (idempotent, committed before the answer)
    app.py        the web app and its JSON API
    pages.py      the student and teacher pages
    report.py     the teacher's figures; agreement.py: Cohen's kappa and Krippendorff's alpha
    client.py     a small Python client for notebooks
    cli.py        the `classroom` commands
"""
