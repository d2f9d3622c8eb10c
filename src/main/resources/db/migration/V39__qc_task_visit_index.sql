-- The visit's tasks are found through uq_qc_task (hospital, visit_id, ...), whose first two columns are the same as
-- ix_qc_task_visit's: the second index only cost every task insert and update one more index entry.
DROP INDEX IF EXISTS ix_qc_task_visit;
