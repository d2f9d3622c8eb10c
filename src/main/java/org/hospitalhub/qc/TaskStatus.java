package org.hospitalhub.qc;

/**
 * The life of a task: OPEN until its document is written (COMPLETED_ON_TIME or COMPLETED_LATE) or its due time passes
 * (OVERDUE, then COMPLETED_LATE when the document comes); CANCELLED when the event that opened it is cancelled (or by
 * hand); a cancelled task reopens when the cancelling event is itself cancelled (cancel discharge).
 */
public enum TaskStatus {
    OPEN,
    OVERDUE,
    COMPLETED_ON_TIME,
    COMPLETED_LATE,
    CANCELLED;

    public boolean completed() {
        return this == COMPLETED_ON_TIME || this == COMPLETED_LATE;
    }

    /** Still to be written: OPEN or OVERDUE. */
    public boolean pending() {
        return this == OPEN || this == OVERDUE;
    }
}
