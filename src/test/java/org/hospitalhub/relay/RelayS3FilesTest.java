package org.hospitalhub.relay;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.Random;

import org.hospitalhub.relay.client.RelayFiles;
import org.hospitalhub.relay.client.RelayRejectedException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import software.amazon.awssdk.services.s3.S3Client;

/**
 * The relay's file store on a real S3 API server (S3Proxy, a child process): a top node and a county keep their
 * complete files in one bucket under their own prefixes, a second county keeps them in its folder. Uploads resume,
 * are checked, land in the bucket whole or not at all, replicate up the tree, survive the bucket going away mid-upload,
 * and are downloaded on another branch through the tree.
 */
class RelayS3FilesTest {

    static final String BUCKET = "relay";
    static Path dir;
    static S3ProxyServer s3proxy;
    static S3Client s3;
    static RelayNode top;
    static RelayNode county;
    static RelayNode county2;
    static int topHttp;
    static int countyHttp;
    static int county2Http;
    static Path countyDir;
    static Path county2Dir;

    @BeforeAll
    static void tree() throws Exception {
        dir = Files.createTempDirectory("relay-s3");
        s3proxy = new S3ProxyServer(dir.resolve("s3"), BUCKET).start();
        s3 = s3proxy.client();
        topHttp = RelayTreeTest.freePort();
        countyHttp = RelayTreeTest.freePort();
        county2Http = RelayTreeTest.freePort();
        countyDir = Files.createDirectories(dir.resolve("county-files"));
        county2Dir = Files.createDirectories(dir.resolve("county2-files"));
        top = RelayNode.builder().topology(Topology.parse("""
                node: top
                children: [{id: county, transport: http}, {id: county2, transport: http}, {id: county3, transport: http}]
                """, "top")).tokens(RelayTokens.parse("county:t-county;county2:t-county2;county3:t-county3"))
                .dataSource(RelayOnH2Test.h2(dir, "top")).httpPort(topHttp).host("127.0.0.1").options(RelayTreeTest.FAST)
                .fileDir(Files.createDirectories(dir.resolve("top-files"))).s3(s3proxy.settings(BUCKET, "top")).build().start();
        county = child("county", countyHttp, topHttp, countyDir).s3(s3proxy.settings(BUCKET, "county/")).build().start();
        county2 = child("county2", county2Http, topHttp, county2Dir).build().start();
    }

    static RelayNode.Builder child(String id, int http, int parentHttp, Path files) {
        return RelayNode.builder().topology(Topology.parse("""
                node: %s
                parent: {id: top, transport: http, url: "http://127.0.0.1:%d"}
                clients: [{id: clinic, transport: http}]
                """.formatted(id, parentHttp), id)).tokens(RelayTokens.parse("clinic:t-clinic-" + id))
                .parentToken("t-" + id).dataSource(RelayOnH2Test.h2(dir, id)).httpPort(http).host("127.0.0.1")
                .options(RelayTreeTest.FAST).fileDir(files);
    }

    @AfterAll
    static void close() throws Exception {
        for (AutoCloseable c : new AutoCloseable[] {county2, county, top, s3, s3proxy}) {
            if (c != null) {
                c.close();
            }
        }
    }

    @Test
    void aFileUploadedResumablyLandsInTheBucketWholeReplicatesUpAndIsDownloadedOnAnotherBranch() throws Exception {
        byte[] data = random(700 * 1024, 5);
        Path image = Files.write(dir.resolve("ct-scan.dcm"), data);
        String sha = RelayFiles.sha256(image);
        // the link broke after the first 256 KiB: the county keeps them on its disk, the bucket has nothing yet
        HttpResponse<String> first = put(countyHttp, "t-clinic-county", sha, data.length, 0, Arrays.copyOf(data, 262144));
        assertEquals(200, first.statusCode(), first.body());
        assertNull(S3ProxyServer.object(s3, BUCKET, "county/files/" + sha), "an unfinished upload is not in the bucket");
        RelayFiles clinic = new RelayFiles(URI.create("http://127.0.0.1:" + countyHttp), "t-clinic-county", 256 * 1024,
                Duration.ofSeconds(10));
        assertEquals(262144, clinic.offset(sha));
        RelayFiles.FileRef ref = clinic.upload(image);
        assertEquals(sha, ref.sha256());

        assertArrayEquals(data, S3ProxyServer.object(s3, BUCKET, "county/files/" + sha), "the whole file, in the bucket");
        try (var left = Files.list(countyDir)) {
            assertEquals(List.of(), left.toList(), "nothing left on the county's disk");
        }
        assertEquals(data.length, clinic.offset(sha), "the offset of a complete file is its size");
        // replicated to the top, in the same bucket under its own prefix; the county's marker is gone then
        await().atMost(Duration.ofSeconds(20)).until(() -> S3ProxyServer.object(s3, BUCKET, "top/files/" + sha) != null
                && S3ProxyServer.keys(s3, BUCKET, "county/to-parent/").isEmpty());
        assertArrayEquals(data, S3ProxyServer.object(s3, BUCKET, "top/files/" + sha));

        // the other county (files in its folder) fetches it from the top, which streams it from the bucket
        RelayFiles other = new RelayFiles(URI.create("http://127.0.0.1:" + county2Http), "t-clinic-county2");
        Path copy = dir.resolve("copy.dcm");
        other.download(ref, copy);
        assertArrayEquals(data, Files.readAllBytes(copy));
        assertTrue(Files.exists(county2Dir.resolve(sha)) && Files.exists(county2Dir.resolve(sha + ".up")),
                "kept in county2's folder, known to be at the parent");
        // and the county serves it from the bucket with its length
        HttpResponse<byte[]> direct = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
                URI.create("http://127.0.0.1:" + countyHttp + "/relay/v1/files/" + sha))
                .header("Authorization", "Bearer t-clinic-county").build(), HttpResponse.BodyHandlers.ofByteArray());
        assertEquals(200, direct.statusCode());
        assertEquals(String.valueOf(data.length), direct.headers().firstValue("Content-Length").orElse(null));
        assertArrayEquals(data, direct.body());

        // sent again: already complete, nothing rewritten
        assertEquals(sha, clinic.upload(image).sha256());
    }

    @Test
    void bytesThatDoNotMatchTheirChecksumNeverReachTheBucket() throws Exception {
        String claimed = "ab".repeat(32);
        HttpResponse<String> r = put(countyHttp, "t-clinic-county", claimed, 3, 0, new byte[] {1, 2, 3});
        assertEquals(422, r.statusCode(), r.body());
        assertTrue(r.body().contains("checksum mismatch"), r.body());
        assertNull(S3ProxyServer.object(s3, BUCKET, "county/files/" + claimed));
        assertFalse(Files.exists(countyDir.resolve(claimed + ".part")), "the upload was discarded");
        // curl's default for --data-binary: a form's content type is refused before the body is read as form fields
        HttpResponse<String> form = HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:"
                + countyHttp + "/relay/v1/files/" + claimed + "?size=3&offset=0")).header("Authorization", "Bearer t-clinic-county")
                .header("Content-Type", "application/x-www-form-urlencoded").PUT(HttpRequest.BodyPublishers.ofByteArray(
                        new byte[] {(byte) 0xe3, '%', (byte) 0x13})).build(), HttpResponse.BodyHandlers.ofString());
        assertEquals(415, form.statusCode(), form.body());
        assertTrue(form.body().contains("application/octet-stream"), form.body());
    }

    @Test
    void anUploadGoesOnWhileTheBucketIsDownAndCompletesOnceItIsBack() throws Exception {
        byte[] data = random(600 * 1024, 9);
        Path report = Files.write(dir.resolve("report.pdf"), data);
        String sha = RelayFiles.sha256(report);
        assertEquals(200, put(countyHttp, "t-clinic-county", sha, data.length, 0, Arrays.copyOf(data, 100_000)).statusCode());
        s3proxy.stop();
        try {
            RelayFiles clinic = new RelayFiles(URI.create("http://127.0.0.1:" + countyHttp), "t-clinic-county", 128 * 1024,
                    Duration.ofSeconds(10));
            RelayRejectedException down = assertThrows(RelayRejectedException.class, () -> clinic.upload(report));
            assertEquals(503, down.status(), down.getMessage());
            assertEquals(data.length, clinic.offset(sha), "every byte is on the county's disk, waiting for the bucket");
            assertTrue(Files.exists(countyDir.resolve(sha + ".part")));
            HttpResponse<String> read = HttpClient.newHttpClient().send(HttpRequest.newBuilder(
                    URI.create("http://127.0.0.1:" + countyHttp + "/relay/v1/files/" + sha))
                    .header("Authorization", "Bearer t-clinic-county").build(), HttpResponse.BodyHandlers.ofString());
            assertEquals(503, read.statusCode(), read.body());
            assertFalse(read.body().contains("127.0.0.1"), "the store's address stays in the log: " + read.body());
        } finally {
            s3proxy.start();
        }
        RelayFiles clinic = new RelayFiles(URI.create("http://127.0.0.1:" + countyHttp), "t-clinic-county");
        assertEquals(sha, clinic.upload(report).sha256());
        assertArrayEquals(data, S3ProxyServer.object(s3, BUCKET, "county/files/" + sha));
        assertFalse(Files.exists(countyDir.resolve(sha + ".part")));
        await().atMost(Duration.ofSeconds(20)).until(() -> S3ProxyServer.object(s3, BUCKET, "top/files/" + sha) != null);
        assertArrayEquals(data, S3ProxyServer.object(s3, BUCKET, "top/files/" + sha));
    }

    @Test
    void aNodeRestartedOnAnEmptyDiskStillSendsItsParentTheFilesItOwesIt() throws Exception {
        byte[] data = random(300 * 1024, 13);
        Path scan = Files.write(dir.resolve("mri.dcm"), data);
        String sha = RelayFiles.sha256(scan);
        int http = RelayTreeTest.freePort();
        Path firstDisk = Files.createDirectories(dir.resolve("county3-pod-1"));
        // the first pod's parent link points nowhere (the top unreachable): the file waits in the bucket, marked
        try (RelayNode pod1 = child("county3", http, RelayTreeTest.freePort(), firstDisk)
                .s3(s3proxy.settings(BUCKET, "county3/")).build().start()) {
            new RelayFiles(URI.create("http://127.0.0.1:" + http), "t-clinic-county3").upload(scan);
            assertEquals(List.of("county3/to-parent/" + sha), S3ProxyServer.keys(s3, BUCKET, "county3/to-parent/"));
        }
        assertNull(S3ProxyServer.object(s3, BUCKET, "top/files/" + sha), "the top never got it");
        // the next pod starts on an empty disk, its parent reachable: the bucket says what it still owes
        try (RelayNode pod2 = child("county3", http, topHttp, Files.createDirectories(dir.resolve("county3-pod-2")))
                .s3(s3proxy.settings(BUCKET, "county3/")).build().start()) {
            await().atMost(Duration.ofSeconds(20)).until(() -> S3ProxyServer.object(s3, BUCKET, "top/files/" + sha) != null
                    && S3ProxyServer.keys(s3, BUCKET, "county3/to-parent/").isEmpty());
        }
        assertArrayEquals(data, S3ProxyServer.object(s3, BUCKET, "top/files/" + sha));
    }

    @Test
    void aMarkWhoseFileNeverArrivedIsDroppedOnceOldAndAMarkWithItsFileIsKept() throws Exception {
        byte[] kept = random(40_000, 31);
        Path k = Files.write(dir.resolve("kept.dcm"), kept);
        String shaK = RelayFiles.sha256(k);
        String marks = "county3-orphans/to-parent/";
        int http = RelayTreeTest.freePort();
        // the parent is away: the node's file stays marked, to be sent when it is back
        try (RelayNode pod = child("county3", http, RelayTreeTest.freePort(), Files.createDirectories(dir.resolve("county3-orphans")))
                .s3(s3proxy.settings(BUCKET, "county3-orphans/")).build().start()) {
            new RelayFiles(URI.create("http://127.0.0.1:" + http), "t-clinic-county3").upload(k);
            // a store that failed after writing its mark, never retried: the mark without its file
            String shaO = "ab".repeat(32);
            s3.putObject(b -> b.bucket(BUCKET).key(marks + shaO), software.amazon.awssdk.core.sync.RequestBody.empty());
            assertEquals(java.util.Set.of(marks + shaO, marks + shaK), java.util.Set.copyOf(S3ProxyServer.keys(s3, BUCKET, marks)));

            assertEquals(0, pod.dropOrphanMarks(java.time.Instant.now().minus(RelayNode.ORPHAN_MARK_AGE)),
                    "marks younger than the age stay: their store may still be under way");
            assertEquals(1, pod.dropOrphanMarks(java.time.Instant.now().plusSeconds(1)));
            assertEquals(List.of(marks + shaK), S3ProxyServer.keys(s3, BUCKET, marks), "the mark with its file stays");
            assertArrayEquals(kept, S3ProxyServer.object(s3, BUCKET, "county3-orphans/files/" + shaK));
        }
    }

    @Test
    void filesPastTheirRetentionAreDeletedOnceTheParentHasThemAndAbandonedUploadsToo() throws Exception {
        byte[] sent = random(200 * 1024, 21);
        Path x = Files.write(dir.resolve("x-ray.dcm"), sent);
        String shaX = RelayFiles.sha256(x);
        RelayFiles.FileRef ref = new RelayFiles(URI.create("http://127.0.0.1:" + countyHttp), "t-clinic-county").upload(x);
        await().atMost(Duration.ofSeconds(20)).until(() -> S3ProxyServer.object(s3, BUCKET, "top/files/" + shaX) != null
                && !S3ProxyServer.keys(s3, BUCKET, "county/to-parent/").contains("county/to-parent/" + shaX));
        new RelayFiles(URI.create("http://127.0.0.1:" + county2Http), "t-clinic-county2").download(ref, dir.resolve("x-copy.dcm"));
        assertTrue(Files.exists(county2Dir.resolve(shaX)));
        // an upload its uploader gave up on
        byte[] abandoned = random(100_000, 22);
        String shaZ = RelayFiles.sha256(Files.write(dir.resolve("z.bin"), abandoned));
        assertEquals(200, put(countyHttp, "t-clinic-county", shaZ, abandoned.length, 0, Arrays.copyOf(abandoned, 50_000)).statusCode());
        assertTrue(Files.exists(countyDir.resolve(shaZ + ".part")));

        // a node whose parent never got its file keeps it, however old
        byte[] unsent = random(50_000, 23);
        Path y = Files.write(dir.resolve("y.dcm"), unsent);
        String shaY = RelayFiles.sha256(y);
        int http = RelayTreeTest.freePort();
        try (RelayNode pod = child("county3", http, RelayTreeTest.freePort(), Files.createDirectories(dir.resolve("county3-keep")))
                .s3(s3proxy.settings(BUCKET, "county3-keep/")).fileRetention(Duration.ofMillis(1)).build().start()) {
            new RelayFiles(URI.create("http://127.0.0.1:" + http), "t-clinic-county3").upload(y);
            assertEquals(0, pod.purgeFiles(java.time.Instant.now().plusSeconds(1)));
            assertArrayEquals(unsent, S3ProxyServer.object(s3, BUCKET, "county3-keep/files/" + shaY));
        }

        java.time.Instant later = java.time.Instant.now().plusSeconds(1);
        assertTrue(county.files().purge(later) >= 2, "x-ray and the abandoned upload, at least");
        assertNull(S3ProxyServer.object(s3, BUCKET, "county/files/" + shaX), "gone from the county's prefix");
        assertFalse(Files.exists(countyDir.resolve(shaZ + ".part")), "the abandoned upload is gone");
        assertArrayEquals(sent, S3ProxyServer.object(s3, BUCKET, "top/files/" + shaX), "the top keeps its own copy");
        assertTrue(county2.files().purge(later) >= 1);
        assertFalse(Files.exists(county2Dir.resolve(shaX)) || Files.exists(county2Dir.resolve(shaX + ".up")), "gone from county2's folder");
        // still there for anyone asking: the county fetches it from the top again
        RelayFiles again = new RelayFiles(URI.create("http://127.0.0.1:" + countyHttp), "t-clinic-county");
        Path copy = dir.resolve("x-again.dcm");
        again.download(ref, copy);
        assertArrayEquals(sent, Files.readAllBytes(copy));
        IllegalArgumentException tooShort = assertThrows(IllegalArgumentException.class,
                () -> app("filesystem", null, Optional.of(Duration.ofMinutes(5))));
        assertTrue(tooShort.getMessage().contains("hub.relay.file-retention"), tooShort.getMessage());
    }

    @Test
    void aMissingBucketOrRefusedCredentialsStopTheNodeWithTheSettingNamed() throws Exception {
        S3Backend.Settings good = s3proxy.settings(BUCKET, "x/");
        IllegalStateException noBucket = assertThrows(IllegalStateException.class,
                () -> new S3Backend(s3proxy.settings("no-such-bucket", ""), Duration.ofSeconds(5)).check());
        assertTrue(noBucket.getMessage().contains("hub.relay.s3.bucket"), noBucket.getMessage());
        S3Backend.Settings wrong = new S3Backend.Settings(good.endpoint(), good.region(), BUCKET, "", true,
                good.accessKeyId(), Optional.of("not-the-secret"));
        IllegalStateException refused = assertThrows(IllegalStateException.class,
                () -> new S3Backend(wrong, Duration.ofSeconds(5)).check());
        assertTrue(refused.getMessage().contains("refused this node's credentials"), refused.getMessage());
        assertFalse(refused.getMessage().contains("not-the-secret"), "no secret in the message");
        assertFalse(wrong.toString().contains("not-the-secret"), "no secret in the settings' text: " + wrong);
        IllegalArgumentException half = assertThrows(IllegalArgumentException.class, () -> new S3Backend.Settings(
                good.endpoint(), "us-east-1", BUCKET, "", true, good.accessKeyId(), Optional.empty()));
        assertTrue(half.getMessage().contains("go together"), half.getMessage());
        IllegalArgumentException noName = assertThrows(IllegalArgumentException.class, () -> new S3Backend.Settings(
                good.endpoint(), "us-east-1", " ", "", true, Optional.empty(), Optional.empty()));
        assertTrue(noName.getMessage().contains("HUB_RELAY_S3_BUCKET"), noName.getMessage());
    }

    @Test
    void theHubsFileStoreSettingsAreCheckedWithTheSettingNamed() {
        IllegalArgumentException store = assertThrows(IllegalArgumentException.class, () -> app("s4", s3Config("http://x:9000")));
        assertTrue(store.getMessage().contains("hub.relay.file-store") && store.getMessage().contains("s4"), store.getMessage());
        for (String endpoint : List.of("minio.example:9000", "ftp://minio.example", "http://")) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> app("s3", s3Config(endpoint)));
            assertTrue(e.getMessage().contains("hub.relay.s3.endpoint"), endpoint + ": " + e.getMessage());
        }
        app("S3", s3Config("https://minio.example:9000")); // accepted (nothing connects before start)
    }

    static RelayApp app(String fileStore, RelayS3Config s3) {
        return app(fileStore, s3, Optional.empty());
    }

    static RelayApp app(String fileStore, RelayS3Config s3, Optional<Duration> retention) {
        return new RelayApp(true, Optional.of("x.yaml"), Optional.empty(), Optional.empty(),
                Optional.empty(), 0, "127.0.0.1", Duration.ofSeconds(10), Duration.ofSeconds(30),
                Duration.ofSeconds(20), Duration.ofSeconds(15), 65536, Duration.ofDays(7), Duration.ofMillis(500),
                Duration.ofSeconds(30), Duration.ofSeconds(5), Duration.ofDays(8), 256, dir.toString(), fileStore,
                retention, s3, null, null, null, null);
    }

    static RelayS3Config s3Config(String endpoint) {
        return new RelayS3Config() {
            public Optional<String> endpoint() {
                return Optional.of(endpoint);
            }

            public String region() {
                return "us-east-1";
            }

            public Optional<String> bucket() {
                return Optional.of(BUCKET);
            }

            public Optional<String> prefix() {
                return Optional.empty();
            }

            public boolean pathStyle() {
                return true;
            }

            public Optional<String> accessKeyId() {
                return Optional.empty();
            }

            public Optional<String> secretAccessKey() {
                return Optional.empty();
            }
        };
    }

    static HttpResponse<String> put(int port, String token, String sha, long size, long offset, byte[] bytes) throws Exception {
        return HttpClient.newHttpClient().send(HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/relay/v1/files/"
                + sha + "?size=" + size + "&offset=" + offset)).header("Authorization", "Bearer " + token)
                .PUT(HttpRequest.BodyPublishers.ofByteArray(bytes)).build(), HttpResponse.BodyHandlers.ofString());
    }

    static byte[] random(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }
}
