"""crm_sync: Business Central <-> Dataverse synchronization by table mapping (BC's Integration Table Mapping).

The convergence invariant
-------------------------

After any interleaving of users' edits, creates and deletes on both sides, incremental and full runs, and runs
killed at any point (or cut off by 429, 5xx and dropped connections before or after the service processed a
request), once clean runs have caught up:

1. every record in a mapping's scope has exactly one twin on the other side, and couplings are 1:1;
2. no pending coupling is left (``dynamics.sync_pending_create``) and no write-back is owed
   (``write_back_pending``);
3. every mapped field holds the same value on both sides, per the field's direction and transformations;
4. no user's edit is lost: the last edit of a field wins on both sides; when both sides changed since the last
   sync, the mapping's ``resolve_update_conflicts`` decides (``none`` reports an update conflict naming both
   records, nothing is silently reverted);
5. no record is Skipped that is not genuinely failing (the same error repeated ``skip_after_same_error``
   times), and a Skipped record stays Skipped until reset;
6. a watermark never passes a change that was not read.

How the engine keeps it:

- **Watermarks** (:mod:`.runner`): an ERP watermark is capped at the pass's start less 999 ms (BC, codeunit
  "CRM Integration Table Synch."); CRM changes are read in ``versionnumber`` order, so the highest version read
  is safe. An edit made while a run pages is read by that run or the next. What a pass read after its capped
  watermark (id, change marker, digest of the record as read) is kept with the watermark
  (``dynamics.sync_read_overlap``): the next run, which reads that second again, leaves a record read again
  unchanged alone (not processed, not counted).
- **The pending-coupling protocol** (:mod:`.writer`, :mod:`.store`): every create is recorded with the coupling
  it makes and committed before it is sent; the page's commit drops it. A run first settles what is left: the
  created record is found by the key the create used and coupled as the lost commit would have, so a later
  user edit counts as that side's change. A pair created from the CRM owes the CRM its to-CRM fields (the new
  number) until the write-back commits.
- **Fingerprints** (:mod:`.fingerprint`, :mod:`.planner`): a pair is Unchanged when the mapped values equal what
  the destination holds; when the CRM record was read (changed since, or a full sync) it is compared as it is,
  with lookups the sync leaves blank masked (the CRM's default currency or owner is no difference). A CRM record
  that the ERP->CRM pass overwrites is never sent back to the ERP from a stale copy. A full sync reads every ERP
  record, but one unchanged since its pair's last sync is no side of an update conflict: the CRM's change goes to
  the ERP. A pair still owing its write-back compares without the to-CRM-only fields the CRM was never sent.
- **Crash points** (:mod:`.crash_points`): every boundary is named; the tests kill a child process at each.

``tests/integration/sync/test_sync_property.py`` checks the invariant with a hypothesis state machine
(``make test`` runs a few sequences, ``make chaos`` hundreds, then a few over tens of thousands of records).
"""
