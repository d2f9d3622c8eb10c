package org.hospitalhub.relay;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.DigestInputStream;
import java.security.MessageDigest;
import java.time.Duration;
import java.time.Instant;
import java.util.HexFormat;
import java.util.List;
import java.util.Optional;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import org.jboss.logging.Logger;

/**
 * The node's file store (files do not travel inside packets; packets carry {@code sha256} references). An upload under
 * way is {@code <dir>/<sha256>.part} on the node's disk (resumable: the uploader asks for the offset and continues
 * there); once all its bytes are there and match their sha256 the file goes to the {@link FileBackend} (the same
 * folder by default, or an S3-compatible bucket). Complete files are replicated up to the parent (over HTTP, at the
 * parent's {@code url}), so the top has every file; a download of a file this node lacks is fetched from the parent
 * (which fetches from its own parent if needed), verified, kept.
 */
final class FileStore implements AutoCloseable {

    private static final Logger LOG = Logger.getLogger(FileStore.class);
    static final Pattern SHA256 = Pattern.compile("[0-9a-f]{64}");
    static final int CHUNK = 512 * 1024;

    private final Path dir;
    private final FileBackend backend;
    private final Optional<URI> parentUrl;
    private final String parentToken;
    private final HttpClient http = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(10)).build();
    private final Duration timeout;
    /** Chunks of one file are written one at a time; different files in parallel (a store to S3 may take seconds). */
    private final Object[] locks = new Object[64];
    private volatile boolean closing;

    FileStore(Path dir, FileBackend backend, Optional<URI> parentUrl, String parentToken, Duration timeout) {
        this.dir = dir;
        this.backend = backend == null ? new FilesystemBackend(dir) : backend;
        this.parentUrl = parentUrl.map(u -> URI.create(u.toString().endsWith("/") ? u.toString() : u + "/"));
        this.parentToken = parentToken;
        this.timeout = timeout;
        for (int i = 0; i < locks.length; i++) {
            locks[i] = new Object();
        }
        try {
            Files.createDirectories(dir);
        } catch (IOException e) {
            throw new IllegalStateException("cannot create the relay file store " + dir + ": " + e.getMessage(), e);
        }
    }

    /** The result of writing one chunk. */
    record Chunk(long offset, boolean complete) {
    }

    /** A complete file to serve: on this node's disk ({@code local}) or as a stream from the backend. */
    record Download(Path local, InputStream stream, long size) {
    }

    static class FileRefusal extends Refusal {
        final long offset;

        FileRefusal(int status, String message, String field, String rule, long offset) {
            super(status, message, field, rule, null);
            this.offset = offset;
        }
    }

    String describe() {
        return backend.describe();
    }

    private Object lock(String sha) {
        return locks[Math.floorMod(sha.hashCode(), locks.length)];
    }

    /**
     * Where an upload continues, and whether the file is complete. A part on disk answers without the backend (an
     * upload under way goes on while the bucket is unreachable; only its completion waits for it).
     */
    Chunk offset(String sha) throws IOException {
        Path part = dir.resolve(sha + ".part");
        if (Files.exists(part)) {
            return new Chunk(Files.size(part), false);
        }
        long complete = backend.size(sha);
        return complete >= 0 ? new Chunk(complete, true) : new Chunk(0, false);
    }

    /**
     * Appends a chunk at {@code offset} (which must be what the store has); at the end verifies the checksum and hands
     * the file to the backend. When that fails (the bucket unreachable), the complete part stays: sending zero bytes at
     * its end later finishes the upload (a part the backend already took, left by a crash before its deletion, is
     * stored again: the same bytes under the same name).
     */
    Chunk write(String sha, long size, long offset, byte[] bytes) throws IOException {
        synchronized (lock(sha)) {
            Path part = dir.resolve(sha + ".part");
            long have = Files.exists(part) ? Files.size(part) : -1;
            if (have < 0) { // a new upload, unless the file is complete already
                long complete = backend.size(sha);
                if (complete >= 0) {
                    return new Chunk(complete, true);
                }
                have = 0;
            }
            if (offset != have) {
                throw new FileRefusal(409, "the upload of " + sha + " continues at offset " + have, "offset", "resume-at", have);
            }
            if (have + bytes.length > size) {
                throw new FileRefusal(400, "more bytes than the declared size " + size, "size", "max", have);
            }
            try (OutputStream out = Files.newOutputStream(part, StandardOpenOption.CREATE, StandardOpenOption.APPEND)) {
                out.write(bytes);
            }
            long now = have + bytes.length;
            if (now < size) {
                return new Chunk(now, false);
            }
            String actual = sha256(part);
            if (!actual.equals(sha)) {
                Files.delete(part);
                throw new FileRefusal(422, "checksum mismatch: the bytes have sha256 " + actual + ", not " + sha
                        + "; the upload was discarded", "sha256", "checksum", 0);
            }
            backend.store(sha, part, parentUrl.isPresent());
            LOG.infof("Relay file %s (%d bytes) complete in %s", sha, size, backend.describe());
            return new Chunk(size, true);
        }
    }

    /** The file, fetched from the parent first if this node does not have it. */
    Optional<Download> find(String sha) throws IOException {
        Optional<Download> here = open(sha);
        if (here.isPresent() || parentUrl.isEmpty()) {
            return here;
        }
        HttpResponse<InputStream> res;
        try {
            res = http.send(HttpRequest.newBuilder(parentUrl.get().resolve("relay/v1/files/" + sha)).timeout(timeout.multipliedBy(4))
                    .header("Authorization", "Bearer " + parentToken).GET().build(), HttpResponse.BodyHandlers.ofInputStream());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
        if (res.statusCode() == 404) {
            res.body().close();
            return Optional.empty();
        }
        if (res.statusCode() != 200) {
            res.body().close();
            throw new IOException("parent answered " + res.statusCode() + " for file " + sha);
        }
        Path tmp = Files.createTempFile(dir, sha, ".fetch");
        try (InputStream in = res.body()) {
            Files.copy(in, tmp, StandardCopyOption.REPLACE_EXISTING);
            if (!sha256(tmp).equals(sha)) {
                throw new IOException("file " + sha + " from the parent does not match its checksum");
            }
            synchronized (lock(sha)) {
                if (backend.size(sha) < 0) {
                    backend.store(sha, tmp, false); // the parent has it
                }
            }
        } finally {
            Files.deleteIfExists(tmp);
        }
        return open(sha);
    }

    private Optional<Download> open(String sha) throws IOException {
        Optional<Path> local = backend.localPath(sha);
        if (local.isPresent()) {
            return Optional.of(new Download(local.get(), null, Files.size(local.get())));
        }
        long size = backend.size(sha);
        if (size < 0) {
            return Optional.empty();
        }
        InputStream in = backend.open(sha, 0);
        return in == null ? Optional.empty() : Optional.of(new Download(null, in, size));
    }

    /** Pushes complete files the parent does not have yet (resumable, like any client). Returns how many. */
    int replicateUp() {
        if (parentUrl.isEmpty()) {
            return 0;
        }
        int n = 0;
        try {
            for (String sha : backend.toParent()) {
                long size = backend.size(sha);
                if (size < 0) {
                    continue; // marked before it was stored, and the store failed: the upload's retry marks it again
                }
                upload(sha, size);
                backend.sentToParent(sha);
                n++;
            }
        } catch (IOException e) {
            LOG.debugf("replicating files to the parent failed (tried again): %s", e.toString());
        }
        return n;
    }

    private void upload(String sha, long size) throws IOException {
        URI uri = parentUrl.get().resolve("relay/v1/files/" + sha);
        long offset = remoteOffset(uri);
        if (size == 0 && offset == 0) { // an empty file: one empty chunk completes it
            HttpResponse<String> r = send(HttpRequest.newBuilder(URI.create(uri + "?size=0&offset=0")).timeout(timeout)
                    .header("Authorization", "Bearer " + parentToken).PUT(HttpRequest.BodyPublishers.noBody()).build());
            if (r.statusCode() != 200 && r.statusCode() != 201) {
                throw new IOException("parent refused file " + sha + ": " + r.statusCode() + " " + r.body());
            }
            return;
        }
        while (offset < size) {
            try (InputStream in = backend.open(sha, offset)) {
                if (in == null) {
                    throw new IOException("file " + sha + " vanished from " + backend.describe());
                }
                while (offset < size) {
                    if (closing) {
                        throw new IOException("the node is closing");
                    }
                    byte[] chunk = in.readNBytes((int) Math.min(CHUNK, size - offset));
                    if (chunk.length == 0) {
                        throw new IOException("file " + sha + " ends at " + offset + ", before its size " + size);
                    }
                    HttpResponse<String> r = send(HttpRequest.newBuilder(URI.create(uri + "?size=" + size + "&offset=" + offset))
                            .timeout(timeout.multipliedBy(2)).header("Authorization", "Bearer " + parentToken)
                            .PUT(HttpRequest.BodyPublishers.ofByteArray(chunk)).build());
                    if (r.statusCode() == 409) {
                        offset = remoteOffset(uri);
                        break; // reopen at the parent's offset
                    }
                    if (r.statusCode() != 200 && r.statusCode() != 201) {
                        throw new IOException("parent refused file " + sha + ": " + r.statusCode() + " " + r.body());
                    }
                    offset += chunk.length;
                }
            }
        }
    }

    private long remoteOffset(URI uri) throws IOException {
        HttpResponse<String> r = send(HttpRequest.newBuilder(URI.create(uri + "/offset")).timeout(timeout)
                .header("Authorization", "Bearer " + parentToken).GET().build());
        if (r.statusCode() != 200) {
            throw new IOException("parent answered " + r.statusCode() + " for the offset of " + uri);
        }
        return HttpEndpoint.JSON.readTree(r.body()).path("offset").asLong();
    }

    private HttpResponse<String> send(HttpRequest req) throws IOException {
        try {
            return http.send(req, HttpResponse.BodyHandlers.ofString());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
    }

    /**
     * Retention: deletes complete files stored before {@code cutoff} (on a node with a parent, only those the parent
     * has), and uploads or fetches left unfinished since then (their uploader gave up). Returns how many files.
     */
    int purge(Instant cutoff) throws IOException {
        int n = 0;
        List<Path> unfinished;
        try (Stream<Path> all = Files.list(dir)) {
            unfinished = all.filter(f -> f.getFileName().toString().endsWith(".part") || f.getFileName().toString().endsWith(".fetch"))
                    .toList();
        }
        for (Path f : unfinished) {
            String name = f.getFileName().toString();
            synchronized (lock(name.substring(0, Math.min(64, name.length())))) {
                try {
                    if (Files.getLastModifiedTime(f).toInstant().isBefore(cutoff)) {
                        Files.delete(f);
                        n++;
                    }
                } catch (NoSuchFileException gone) {
                    // completed or deleted meanwhile
                }
            }
        }
        return n + backend.purge(cutoff, parentUrl.isPresent());
    }

    /** See {@link FileBackend#dropOrphanMarks}. */
    int dropOrphanMarks(Instant cutoff) throws IOException {
        return backend.dropOrphanMarks(cutoff);
    }

    /** Stops replication runs at their next chunk (before {@link #close}). */
    void closing() {
        closing = true;
    }

    @Override
    public void close() {
        closing = true;
        backend.close();
    }

    static String sha256(Path p) throws IOException {
        try (InputStream in = new DigestInputStream(Files.newInputStream(p), MessageDigest.getInstance("SHA-256"))) {
            in.transferTo(OutputStream.nullOutputStream());
            return HexFormat.of().formatHex(((DigestInputStream) in).getMessageDigest().digest());
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
