package org.hospitalhub.relay;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.DigestInputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.function.Supplier;

import org.jboss.logging.Logger;

import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.AwsCredentialsProvider;
import software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.core.checksums.RequestChecksumCalculation;
import software.amazon.awssdk.core.checksums.ResponseChecksumValidation;
import software.amazon.awssdk.core.exception.SdkException;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.http.apache.ApacheHttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.S3Configuration;
import software.amazon.awssdk.services.s3.model.NoSuchBucketException;
import software.amazon.awssdk.services.s3.model.NoSuchKeyException;
import software.amazon.awssdk.services.s3.model.S3Exception;
import software.amazon.awssdk.services.s3.model.S3Object;

/**
 * Complete files in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, OSS/COS in S3 mode): object
 * {@code <prefix>files/<sha256>}, uploaded with its Content-MD5 so the store checks the bytes it received. A file still
 * to be sent to the parent has a marker object {@code <prefix>to-parent/<sha256>}, written before the file and removed
 * once the parent has it: a node whose pod restarts on an empty disk finds the files it still owes its parent in the
 * bucket. Several nodes may share a bucket with different prefixes.
 *
 * <p>Credentials come from {@code hub.relay.s3.access-key-id}/{@code secret-access-key} (a Secret in the
 * environment) or, when those are empty, the SDK's default chain (AWS_* variables, a web identity token, an instance
 * profile). SDK errors reach callers as IOException: the file endpoints answer 503 and the uploader resumes.
 */
final class S3Backend implements FileBackend {

    private static final Logger LOG = Logger.getLogger(S3Backend.class);

    /** {@code hub.relay.s3.*}. */
    record Settings(Optional<URI> endpoint, String region, String bucket, String prefix, boolean pathStyle,
            Optional<String> accessKeyId, Optional<String> secretAccessKey) {

        Settings {
            if (bucket == null || bucket.isBlank()) {
                throw new IllegalArgumentException("hub.relay.file-store=s3 needs hub.relay.s3.bucket (env HUB_RELAY_S3_BUCKET)");
            }
            if (region == null || region.isBlank()) {
                throw new IllegalArgumentException("hub.relay.s3.region is empty (any name, e.g. us-east-1, for a store that "
                        + "ignores regions)");
            }
            accessKeyId = accessKeyId.filter(s -> !s.isBlank());
            secretAccessKey = secretAccessKey.filter(s -> !s.isBlank());
            if (accessKeyId.isPresent() != secretAccessKey.isPresent()) {
                throw new IllegalArgumentException("hub.relay.s3.access-key-id and hub.relay.s3.secret-access-key go together "
                        + "(env HUB_RELAY_S3_ACCESS_KEY_ID, HUB_RELAY_S3_SECRET_ACCESS_KEY); leave both empty for the "
                        + "default credential chain");
            }
            prefix = prefix == null ? "" : prefix.strip();
            if (prefix.startsWith("/")) {
                throw new IllegalArgumentException("hub.relay.s3.prefix must not start with '/': " + prefix);
            }
            if (!prefix.isEmpty() && !prefix.endsWith("/")) {
                prefix = prefix + "/";
            }
        }

        String where() {
            return "s3://" + bucket + "/" + prefix + endpoint.map(e -> " at " + e).orElse("");
        }

        /** Without the secret (a record would print every component). */
        @Override
        public String toString() {
            return where() + " (region " + region + (accessKeyId.isPresent() ? ", access key " + accessKeyId.get() : ", default credentials")
                    + ")";
        }
    }

    private final Settings settings;
    private final S3Client s3;

    S3Backend(Settings settings, Duration timeout) {
        this.settings = settings;
        AwsCredentialsProvider credentials = settings.accessKeyId().isPresent()
                ? StaticCredentialsProvider.create(AwsBasicCredentials.create(settings.accessKeyId().get(),
                        settings.secretAccessKey().get()))
                : DefaultCredentialsProvider.builder().build();
        var builder = S3Client.builder().region(Region.of(settings.region())).credentialsProvider(credentials)
                .httpClient(ApacheHttpClient.builder().connectionTimeout(Duration.ofSeconds(10))
                        .socketTimeout(timeout.multipliedBy(4)).maxConnections(32).build())
                .forcePathStyle(settings.pathStyle())
                // plain Content-Length uploads and checksums only where S3 requires them: what every S3-compatible
                // store understands; the integrity check is the Content-MD5 of each upload (and our own sha256)
                .serviceConfiguration(S3Configuration.builder().chunkedEncodingEnabled(false).build())
                .requestChecksumCalculation(RequestChecksumCalculation.WHEN_REQUIRED)
                .responseChecksumValidation(ResponseChecksumValidation.WHEN_REQUIRED);
        settings.endpoint().ifPresent(builder::endpointOverride);
        this.s3 = builder.build();
    }

    /**
     * At startup: a missing bucket or refused credentials stop the node with a message naming the setting; an
     * unreachable store does not (the file endpoints answer 503 until it is back).
     */
    S3Backend check() {
        try {
            s3.headBucket(b -> b.bucket(settings.bucket()));
        } catch (NoSuchBucketException e) {
            throw new IllegalStateException("hub.relay.s3.bucket: no bucket " + settings.where() + " (create it first)", e);
        } catch (S3Exception e) {
            if (e.statusCode() == 404) {
                throw new IllegalStateException("hub.relay.s3.bucket: no bucket " + settings.where() + " (create it first)", e);
            }
            if (e.statusCode() == 403 || e.statusCode() == 401) {
                throw new IllegalStateException("the S3 store " + settings.where() + " refused this node's credentials (HTTP "
                        + e.statusCode() + "; hub.relay.s3.access-key-id / secret-access-key, env HUB_RELAY_S3_ACCESS_KEY_ID / "
                        + "HUB_RELAY_S3_SECRET_ACCESS_KEY)", e);
            }
            LOG.warnf("Relay file store %s answered HTTP %d at startup; file requests fail until it answers",
                    settings.where(), e.statusCode());
        } catch (SdkException e) {
            LOG.warnf("Relay file store %s is not reachable at startup (%s); file requests fail until it is",
                    settings.where(), e.getMessage());
        }
        return this;
    }

    private String fileKey(String sha) {
        return settings.prefix() + "files/" + sha;
    }

    private String markerKey(String sha) {
        return settings.prefix() + "to-parent/" + sha;
    }

    @Override
    public long size(String sha) throws IOException {
        return call(() -> {
            try {
                return s3.headObject(b -> b.bucket(settings.bucket()).key(fileKey(sha))).contentLength();
            } catch (NoSuchKeyException e) {
                return -1L;
            }
        });
    }

    @Override
    public void store(String sha, Path verified, boolean toParent) throws IOException {
        long size = Files.size(verified);
        String md5 = md5(verified);
        call(() -> {
            if (toParent) {
                s3.putObject(b -> b.bucket(settings.bucket()).key(markerKey(sha)), RequestBody.empty());
            }
            s3.putObject(b -> b.bucket(settings.bucket()).key(fileKey(sha)).contentLength(size).contentMD5(md5)
                    .contentType("application/octet-stream"), RequestBody.fromFile(verified));
            return null;
        });
        Files.delete(verified);
    }

    @Override
    public InputStream open(String sha, long from) throws IOException {
        return call(() -> {
            try {
                return s3.getObject(b -> b.bucket(settings.bucket()).key(fileKey(sha)).range(from > 0 ? "bytes=" + from + "-" : null));
            } catch (NoSuchKeyException e) {
                return null;
            } catch (S3Exception e) {
                if (e.statusCode() == 416) { // from is the end of the file
                    return InputStream.nullInputStream();
                }
                throw e;
            }
        });
    }

    @Override
    public Optional<Path> localPath(String sha) {
        return Optional.empty();
    }

    @Override
    public List<String> toParent() throws IOException {
        return new ArrayList<>(markers().keySet());
    }

    /** The to-parent markers: sha256 → when the marker was written, in key order. */
    private Map<String, Instant> markers() throws IOException {
        String markers = settings.prefix() + "to-parent/";
        return call(() -> {
            Map<String, Instant> shas = new LinkedHashMap<>();
            for (S3Object o : s3.listObjectsV2Paginator(b -> b.bucket(settings.bucket()).prefix(markers)).contents()) {
                String sha = o.key().substring(markers.length());
                if (FileStore.SHA256.matcher(sha).matches()) {
                    shas.put(sha, o.lastModified());
                }
            }
            return shas;
        });
    }

    /**
     * A marker is written before its file, so a store that failed leaves a marker without a file; the uploader's next
     * call stores the file and writes the marker again. One older than {@code cutoff} whose file is still missing was
     * given up: it is deleted, instead of being listed and skipped at every replication run.
     */
    @Override
    public int dropOrphanMarks(Instant cutoff) throws IOException {
        int n = 0;
        for (Map.Entry<String, Instant> m : markers().entrySet()) {
            String sha = m.getKey();
            if (m.getValue().isBefore(cutoff) && size(sha) < 0) {
                sentToParent(sha);
                n++;
            }
        }
        return n;
    }

    @Override
    public void sentToParent(String sha) throws IOException {
        call(() -> s3.deleteObject(b -> b.bucket(settings.bucket()).key(markerKey(sha))));
    }

    @Override
    public int purge(Instant cutoff, boolean keepUnsent) throws IOException {
        Set<String> unsent = keepUnsent ? new HashSet<>(toParent()) : Set.of();
        String files = settings.prefix() + "files/";
        return call(() -> {
            int n = 0;
            for (S3Object o : s3.listObjectsV2Paginator(b -> b.bucket(settings.bucket()).prefix(files)).contents()) {
                String sha = o.key().substring(files.length());
                if (FileStore.SHA256.matcher(sha).matches() && o.lastModified().isBefore(cutoff) && !unsent.contains(sha)) {
                    s3.deleteObject(b -> b.bucket(settings.bucket()).key(o.key()));
                    n++;
                }
            }
            return n;
        });
    }

    @Override
    public String describe() {
        return settings.where();
    }

    @Override
    public void close() {
        s3.close();
    }

    private <T> T call(Supplier<T> op) throws IOException {
        try {
            return op.get();
        } catch (SdkException e) {
            throw new FileBackend.Unavailable("S3 file store " + settings.where() + ": " + e.getMessage(), e);
        }
    }

    static String md5(Path p) throws IOException {
        try (DigestInputStream in = new DigestInputStream(Files.newInputStream(p), MessageDigest.getInstance("MD5"))) {
            in.transferTo(OutputStream.nullOutputStream());
            return Base64.getEncoder().encodeToString(in.getMessageDigest().digest());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
