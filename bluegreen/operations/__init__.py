"""The operations that change what runs and where traffic goes — deploy (`deploy`), switch,
rollback and retire (`flips`) and the canary commands (`canary`) — each built as a plan of steps
and executed inside a session (connections + lock), always ending in a history record. Import
them from their modules: a command loads only what it runs (`rollback` needs none of the
canary's analysis or the deploy's upload)."""
