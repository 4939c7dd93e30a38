"""Background posting: the reference's job queue for sales and purchase documents (docs/reference/dynamics-semantics.md
section 2).

- :mod:`.categories`: job queue categories (SALESPOST, PURCHPOST) and the document types they post, with the API
  entity sets and posting actions;
- :mod:`.entries`: Job Queue Entry and Job Queue Log Entry, statuses, the document-level Job Queue Status;
- :mod:`.queue`: Post via Job Queue (enqueue) and Remove from Job Queue, listings;
- :mod:`.runner`: the drain that posts one document of a category at a time, retries, timeouts, recovery;
- :mod:`.printing`: Post & Print destinations (object storage folder, CUPS ``lp``);
- :mod:`.batch`: Batch Post (find open documents and queue them); :mod:`.schedule`: when the DAGs run;
- ``python -m dynamics_jobqueue.posting``: the command line (enqueue, remove, list, log, drain, batch-post,
  create-pools).
"""
