package org.hospitalhub.delivery;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;

/** The group commit shared by the HTTP ingest and the relay's store writer, with a writer that records its groups. */
class GroupCommitterTest {

    /** Records each group written; refuses a group holding "bad"; can be held on a latch to let requests queue up. */
    private static final class Recorder implements GroupCommitter.Writer<String, String> {
        final List<List<String>> groups = new CopyOnWriteArrayList<>();
        final Semaphore entered = new Semaphore(0);
        volatile CountDownLatch hold = new CountDownLatch(0);
        volatile Error error;

        @Override
        public List<String> write(List<String> group) throws Exception {
            entered.release();
            hold.await(10, TimeUnit.SECONDS);
            if (error != null) {
                Error e = error;
                error = null;
                throw e;
            }
            if (group.contains("bad")) {
                throw new SQLException("refused: bad");
            }
            groups.add(List.copyOf(group));
            return group.stream().map(r -> "stored " + r).toList();
        }
    }

    /** Submits {@code first} and returns once the writer holds it, so that what is submitted next waits in the queue. */
    private static CompletableFuture<String> occupy(GroupCommitter<String, String> g, Recorder w, String first)
            throws InterruptedException {
        w.hold = new CountDownLatch(1);
        w.entered.drainPermits();
        CompletableFuture<String> f = g.submit(first);
        assertTrue(w.entered.tryAcquire(5, TimeUnit.SECONDS), "the writer never took " + first);
        return f;
    }

    private static <T> T await(CompletableFuture<T> f) throws Exception {
        return f.get(10, TimeUnit.SECONDS);
    }

    @Test
    void requestsWaitingTogetherAreWrittenAsOneGroupInOrder() throws Exception {
        Recorder w = new Recorder();
        try (GroupCommitter<String, String> g = new GroupCommitter<>("t", 100, 100, r -> 1, w)) {
            CompletableFuture<String> first = occupy(g, w, "a"); // held by the writer while the rest queue up
            List<CompletableFuture<String>> rest = new ArrayList<>();
            for (String r : List.of("b", "c", "d")) {
                rest.add(g.submit(r));
            }
            assertEquals(3, g.waiting());
            w.hold.countDown();
            assertEquals("stored a", await(first));
            assertEquals(List.of("stored b", "stored c", "stored d"), List.of(await(rest.get(0)), await(rest.get(1)), await(rest.get(2))));
            assertEquals(List.of(List.of("a"), List.of("b", "c", "d")), w.groups);
        }
    }

    @Test
    void aGroupTakesAtMostMaxGroupItemsAndALargerRequestGoesAlone() throws Exception {
        Recorder w = new Recorder();
        try (GroupCommitter<String, String> g = new GroupCommitter<>("t", 5, 100, String::length, w)) {
            CompletableFuture<String> first = occupy(g, w, "x"); // held by the writer while the rest queue up
            List<CompletableFuture<String>> rest = new ArrayList<>();
            for (String r : List.of("aa", "bbb", "cc", "dddddddd", "e")) {
                rest.add(g.submit(r));
            }
            w.hold.countDown();
            await(first);
            for (CompletableFuture<String> f : rest) {
                await(f);
            }
            assertEquals(List.of(List.of("x"), List.of("aa", "bbb"), List.of("cc"), List.of("dddddddd"), List.of("e")), w.groups);
        }
    }

    @Test
    void aRequestTheStoreRefusesFailsAloneAndTheOthersInItsGroupAreStored() throws Exception {
        Recorder w = new Recorder();
        try (GroupCommitter<String, String> g = new GroupCommitter<>("t", 100, 100, r -> 1, w)) {
            CompletableFuture<String> first = occupy(g, w, "a"); // held by the writer while the rest queue up
            CompletableFuture<String> b = g.submit("b");
            CompletableFuture<String> bad = g.submit("bad");
            CompletableFuture<String> c = g.submit("c");
            w.hold.countDown();
            await(first);
            assertEquals("stored b", await(b));
            assertEquals("stored c", await(c));
            ExecutionException e = assertThrows(ExecutionException.class, () -> await(bad));
            assertInstanceOf(SQLException.class, e.getCause());
            assertEquals(List.of(List.of("a"), List.of("b"), List.of("c")), w.groups, "the failed group was written again one by one");
        }
    }

    @Test
    void aFullQueueRefusesAtOnceWithBusy() throws Exception {
        Recorder w = new Recorder();
        try (GroupCommitter<String, String> g = new GroupCommitter<>("t", 100, 2, r -> 1, w)) {
            CompletableFuture<String> first = occupy(g, w, "a"); // held by the writer while the rest queue up
            CompletableFuture<String> b = g.submit("b");
            CompletableFuture<String> c = g.submit("c");
            CompletableFuture<String> d = g.submit("d");
            ExecutionException e = assertThrows(ExecutionException.class, () -> d.get(1, TimeUnit.SECONDS));
            assertInstanceOf(GroupCommitter.Busy.class, e.getCause());
            w.hold.countDown();
            await(first);
            assertEquals("stored b", await(b));
            assertEquals("stored c", await(c));
        }
    }

    @Test
    void theWriterSurvivesAnErrorAndStoppingFailsWhatIsStillWaiting() throws Exception {
        Recorder w = new Recorder();
        w.error = new OutOfMemoryError("simulated");
        GroupCommitter<String, String> g = new GroupCommitter<>("t", 100, 100, r -> 1, w);
        ExecutionException e = assertThrows(ExecutionException.class, () -> await(g.submit("a")));
        assertInstanceOf(OutOfMemoryError.class, e.getCause());
        assertEquals("stored b", await(g.submit("b")), "the writer is still there");
        CompletableFuture<String> held = occupy(g, w, "c");
        CompletableFuture<String> waiting = g.submit("d");
        new Thread(() -> {
            try {
                Thread.sleep(300);
            } catch (InterruptedException ignored) {
                // the latch is released regardless
            }
            w.hold.countDown();
        }).start();
        g.close();
        assertTrue(held.isDone() && waiting.isDone());
        assertTrue(waiting.isCompletedExceptionally(), "not stored, so not acknowledged");
        ExecutionException stopped = assertThrows(ExecutionException.class, () -> await(g.submit("e")));
        assertInstanceOf(SQLException.class, stopped.getCause());
    }
}
