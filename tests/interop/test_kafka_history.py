"""The Kafka history checker finds each fault it names, on a small history
made to have exactly that fault, and nothing in a clean one."""
from kafka_history import History


def clean():
    h = History()
    for i, v in enumerate(["a", "b", "c"]):
        h.send("p1", v)
        h.ack(v, 0, i)
    for i, v in enumerate(["a", "b", "c"]):
        h.read("c1", 0, i, v)
    h.commit("g", "c1", 0, 3)
    return h, {0: [(0, "a"), (1, "b"), (2, "c")]}


def faults_of(h, log):
    faults, _ = h.check(log, groups={"c1": "g", "c2": "g"})
    return set(faults)


def test_a_clean_history_has_no_faults():
    h, log = clean()
    faults, summary = h.check(log, groups={"c1": "g"})
    assert faults == {}
    assert summary.startswith("3 sends, 3 acknowledged, 0 failed, 0 read but never acknowledged, 3 reads, 1 commits")


def test_each_fault_is_found():
    h, log = clean()
    assert faults_of(h, {0: [(0, "a"), (1, "b")]}) == {"lost"}

    h, log = clean()
    h.read("c2", 0, 7, "a")
    assert "duplicated" in faults_of(h, log)

    h, log = clean()
    h.read("c2", 0, 1, "x")
    assert "inconsistent offsets" in faults_of(h, log)

    h, log = clean()
    h.send("p1", "d")
    h.send("p1", "e")
    h.ack("e", 0, 3)
    h.ack("d", 0, 4)
    assert faults_of(h, {0: log[0] + [(3, "e"), (4, "d")]}) == {"reordered"}

    h, log = clean()
    h.commit("g", "c2", 0, 1)
    assert faults_of(h, log) == {"committed offsets went backwards"}

    h, log = clean()
    h.read("c2", 0, 1, "b")  # another member of the group, behind the group's commit at 3
    assert faults_of(h, log) == {"rewound past a commit"}

    h = History()
    for i, v in enumerate(["a", "b", "c"]):
        h.send("p1", v)
        h.ack(v, 0, i)
    h.read("c1", 0, 0, "a")
    h.read("c1", 0, 2, "c")
    assert faults_of(h, {0: [(0, "a"), (1, "b"), (2, "c")]}) == {"skipped"}


def test_a_read_at_the_committed_offset_or_of_another_group_is_no_rewind():
    h, log = clean()
    h.send("p1", "d")
    h.ack("d", 0, 3)
    h.read("c2", 0, 3, "d")  # the committed offset is the next to read
    h.read("other", 0, 0, "a")  # not a member of g
    log[0].append((3, "d"))
    assert faults_of(h, log) == set()


def test_an_acknowledgement_that_does_not_say_where_is_lost_only_when_in_no_partition():
    h, log = clean()
    h.send("kcat", "d")
    h.ack("d", None, None)
    assert faults_of(h, {**log, 1: [(0, "d")]}) == set()
    assert faults_of(h, log) == {"lost"}


def test_records_retention_removed_below_the_log_start_are_not_lost_and_the_rest_are():
    h, _ = clean()
    # Retention removed offset 0: the log starts at 1.
    log = {0: [(1, "b"), (2, "c")]}
    faults, summary = h.check(log, log_start={0: 1})
    assert faults == {}, faults
    assert "1 acknowledged below the log start" in summary
    # Without the start, or with a start below a missing record, it is lost.
    assert "lost" in h.check(log)[0]
    assert "lost" in h.check({0: [(2, "c")]}, log_start={0: 1})[0]
