package org.hospitalhub.delivery;

import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.ToIntFunction;

import org.jboss.logging.Logger;

/**
 * Group commit: callers queue requests to be stored, one writer thread stores every request waiting at that moment in
 * one transaction, and each caller's future completes once its request is committed (the caller acknowledges its
 * sender then, never before). Many senders sending one item each then cost one commit per group instead of one each,
 * and their transactions no longer wait for each other's locks.
 * <p>
 * Requests are written in the order they were queued. If a group's transaction fails, each of its requests is written
 * again on its own, so one request the database refuses fails alone and the others are stored. The writer survives
 * any Throwable (its callers would otherwise wait for ever); requests still queued when it stops fail.
 *
 * @param <R> a request (one sender's items)
 * @param <S> the result for one request
 */
public final class GroupCommitter<R, S> implements AutoCloseable {

    /** Stores a group of requests in one transaction and returns one result per request, in order. */
    @FunctionalInterface
    public interface Writer<R, S> {
        List<S> write(List<R> group) throws Exception;
    }

    /** The queue is full: the caller should answer "busy, try again" (nothing of the request was stored). */
    public static final class Busy extends RuntimeException {
        Busy(String message) {
            super(message);
        }
    }

    private static final Logger LOG = Logger.getLogger(GroupCommitter.class);

    private record Pending<R, S>(R request, CompletableFuture<S> done) {
    }

    private final String name;
    private final int maxGroup;
    private final ToIntFunction<R> size;
    private final Writer<R, S> writer;
    private final LinkedBlockingQueue<Pending<R, S>> queue;
    private final Thread thread;
    private volatile boolean running = true;

    /**
     * @param name     names the writer thread and the log lines
     * @param maxGroup most items (as counted by {@code size}) one transaction takes; a larger single request goes alone
     * @param maxQueued most requests waiting; beyond that {@link #submit} fails with {@link Busy}
     */
    public GroupCommitter(String name, int maxGroup, int maxQueued, ToIntFunction<R> size, Writer<R, S> writer) {
        if (maxGroup < 1 || maxQueued < 1) {
            throw new IllegalArgumentException(name + ": maxGroup and maxQueued must be at least 1");
        }
        this.name = name;
        this.maxGroup = maxGroup;
        this.size = size;
        this.writer = writer;
        this.queue = new LinkedBlockingQueue<>(maxQueued);
        this.thread = new Thread(this::loop, name);
        thread.setDaemon(true);
        thread.start();
    }

    /** Queues the request; the future completes when it is committed, exceptionally when it could not be. */
    public CompletableFuture<S> submit(R request) {
        Pending<R, S> p = new Pending<>(request, new CompletableFuture<>());
        if (!running) {
            p.done().completeExceptionally(new SQLException(name + " is stopped"));
            return p.done();
        }
        if (!queue.offer(p)) {
            p.done().completeExceptionally(new Busy(name + ": " + queue.size() + " requests are waiting to be stored; try again"));
            return p.done();
        }
        if (!running && queue.remove(p)) { // stopped meanwhile: the writer may already be gone
            p.done().completeExceptionally(new SQLException(name + " is stopped"));
        }
        return p.done();
    }

    /** Requests waiting now. */
    public int waiting() {
        return queue.size();
    }

    private void loop() {
        while (running) {
            Pending<R, S> first;
            try {
                first = queue.poll(1, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                break;
            }
            if (first == null) {
                continue;
            }
            List<Pending<R, S>> group = new ArrayList<>();
            group.add(first);
            int n = size.applyAsInt(first.request());
            Pending<R, S> next;
            while ((next = queue.peek()) != null && n + size.applyAsInt(next.request()) <= maxGroup) {
                group.add(queue.poll());
                n += size.applyAsInt(next.request());
            }
            try {
                write(group);
            } catch (Throwable t) { // never let the only writer die
                LOG.errorf(t, "%s: storing %d requests failed (not acknowledged)", name, group.size());
                group.forEach(p -> p.done().completeExceptionally(t));
            }
        }
        Pending<R, S> left;
        while ((left = queue.poll()) != null) {
            left.done().completeExceptionally(new SQLException(name + " stopped before storing the request"));
        }
    }

    private void write(List<Pending<R, S>> group) {
        List<S> results;
        try {
            results = writer.write(group.stream().map(Pending::request).toList());
            if (results.size() != group.size()) {
                throw new IllegalStateException(name + ": " + results.size() + " results for " + group.size() + " requests");
            }
        } catch (Exception e) {
            if (group.size() == 1) {
                group.get(0).done().completeExceptionally(e);
            } else {
                group.forEach(p -> write(List.of(p))); // one request that cannot be stored does not fail the others
            }
            return;
        }
        for (int i = 0; i < group.size(); i++) {
            group.get(i).done().complete(results.get(i));
        }
    }

    /** Stops the writer; requests still waiting fail (not acknowledged, so their senders send them again). */
    @Override
    public void close() {
        running = false;
        // wakes an idle writer; one interrupted while writing fails that group unacknowledged (senders send again)
        thread.interrupt();
        try {
            thread.join(TimeUnit.SECONDS.toMillis(30));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        Pending<R, S> left;
        while ((left = queue.poll()) != null) {
            left.done().completeExceptionally(new SQLException(name + " stopped before storing the request"));
        }
    }
}
