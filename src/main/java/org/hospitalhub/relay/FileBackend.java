package org.hospitalhub.relay;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Path;
import java.time.Instant;
import java.util.List;
import java.util.Optional;

/**
 * Where a relay node keeps its complete, verified files ({@code hub.relay.file-store}): the filesystem (default) or an
 * S3-compatible bucket. Uploads under way always stay on the node's disk ({@link FileStore}); a file reaches the
 * backend only once all its bytes are there and match their sha256. The backend also remembers which files still have
 * to be sent to the parent, so that a node restarted on an empty disk (a new pod) still replicates them.
 */
interface FileBackend extends AutoCloseable {

    /** The size of the complete file, or -1 when this backend does not have it. */
    long size(String sha) throws IOException;

    /**
     * Takes a verified file from the node's disk (it is gone from there afterwards). {@code toParent}: remember to send
     * it to the parent (false for a file that came from the parent).
     */
    void store(String sha, Path verified, boolean toParent) throws IOException;

    /** The file's bytes from {@code from} on, or null when this backend does not have it. */
    InputStream open(String sha, long from) throws IOException;

    /** The file on this node's disk, when the backend keeps it there (served without copying). */
    Optional<Path> localPath(String sha);

    /** Files stored with {@code toParent} that the parent does not have yet. */
    List<String> toParent() throws IOException;

    /**
     * Forgets marks of files to send to the parent that were made before {@code cutoff} for a file that never arrived
     * (an upload whose last store failed and that its uploader never retried). Returns how many. A backend that marks
     * a file only once it holds it has none.
     */
    default int dropOrphanMarks(Instant cutoff) throws IOException {
        return 0;
    }

    /** The parent has the file now. */
    void sentToParent(String sha) throws IOException;

    /**
     * Deletes complete files stored before {@code cutoff}; with {@code keepUnsent}, not those the parent does not have
     * yet. Returns how many.
     */
    int purge(Instant cutoff, boolean keepUnsent) throws IOException;

    /** For logs and errors: where the files are. */
    String describe();

    @Override
    default void close() {
    }

    /** The backend did not answer (its details go to the log, not to the client). */
    class Unavailable extends IOException {
        Unavailable(String message, Throwable cause) {
            super(message, cause);
        }
    }
}
