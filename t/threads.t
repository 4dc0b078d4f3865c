#!/usr/bin/perl

# registry_thread_pool: an upload's bytes are hashed and written by pool
# threads (buffers of 64 KiB and more), and everything that syncs (the
# blob, its links, the directories, a manifest and its tags) runs there
# too, never in the worker's event loop; the hashing threads run at nice
# 19.  Uploads behave as without threads (monolithic, chunked, digest
# mismatch, a client gone while the fsync runs), and strace shows every
# fsync() of uploads and manifest pushes issued by a thread of the
# worker, none by its main thread.

use strict;
use warnings;

use feature 'state';

use Test::More;
use IO::Socket::INET;

use lib 't/lib';
use RegTest;

my $t = RegTest->new(location_extra => 'registry_thread_pool default;',
                     server_extra => 'client_body_buffer_size 1m;');

# monolithic

my $blob = join '', map { chr(($_ * 7) % 256) } 1 .. 3 * 1024 * 1024;
my $d = RegTest::digest($blob);

my $r = $t->req('POST', "/v2/th/app/blobs/uploads/?digest=$d", content => $blob);
is($r->{status}, 201, 'monolithic push with aio threads');
is($r->{headers}{'docker-content-digest'}, $d, 'monolithic push digest');
is($r->{headers}{location}, "/v2/th/app/blobs/$d", 'monolithic push location');
is(RegTest::digest($t->req('GET', "/v2/th/app/blobs/$d")->{content}), $d,
   'monolithic blob read back');

# chunked, the last chunk in the PUT

my $half = int(length($blob) / 2);
$r = $t->req('POST', '/v2/th/chunks/blobs/uploads/');
is($r->{status}, 202, 'session opened');
my $loc = $r->{headers}{location};

$r = $t->req('PATCH', $loc, content => substr($blob, 0, $half),
             headers => { 'Content-Range' => '0-' . ($half - 1) });
is($r->{status}, 202, 'first chunk');

$r = $t->req('PUT', "$loc?digest=$d", content => substr($blob, $half),
             headers => { 'Content-Range' => "$half-" . (length($blob) - 1) });
is($r->{status}, 201, 'last chunk in the PUT, published');
is($t->req('GET', "/v2/th/chunks/blobs/$d")->{content}, $blob,
   'chunked blob read back');
is($t->req('GET', $loc)->{status}, 404, 'session gone after publishing');

# a streamed (chunked transfer encoding) body of many buffers

my $big = join '', map { pack('N', $_ * 2654435761 % 4294967296) } 1 .. 2_000_000;
my $bd = RegTest::digest($big);
my $pos = 0;
$r = $t->req('POST', "/v2/th/stream/blobs/uploads/?digest=$bd",
             content => sub {
                 return undef if $pos >= length $big;
                 my $piece = substr($big, $pos, 300_000);
                 $pos += length $piece;
                 return $piece;
             });
is($r->{status}, 201, 'streamed 8 MB body published');
is(RegTest::digest($t->req('GET', "/v2/th/stream/blobs/$bd")->{content}), $bd,
   'streamed body read back');

# a chunk longer than its Content-Range is refused mid-stream, and the
# session stays where it was

$r = $t->req('POST', '/v2/th/long/blobs/uploads/');
my $lloc = $r->{headers}{location};
$r = $t->req('PATCH', $lloc, headers => { 'Content-Range' => '0-999999' },
             content => sub { state $n = 0; return $n++ < 8 ? 'y' x 250_000 : undef });
is($r->{status}, 400, 'chunk longer than its range refused');
is(RegTest::error_code($r), 'BLOB_UPLOAD_INVALID', 'chunk too long code');
is($t->req('GET', $lloc)->{headers}{range}, '0-0', 'session still empty');

# a digest mismatch never reaches the fsync, and publishes nothing

my $wrong = RegTest::digest('something else');
$r = $t->req('POST', "/v2/th/app/blobs/uploads/?digest=$wrong",
             content => 'not it');
is($r->{status}, 400, 'digest mismatch refused');
is(RegTest::error_code($r), 'DIGEST_INVALID', 'digest mismatch code');
ok(!-e $t->root . '/docker/registry/v2/blobs/sha256/'
       . substr($wrong, 7, 2) . '/' . substr($wrong, 7) . '/data',
   'nothing published for the mismatch');

# a client that closes as soon as its body is sent: the push completes
# (the data was whole and matched), and the worker survives

my $gone = 'gone ' x 200_000;
my $gd = RegTest::digest($gone);
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1:' . $t->port)
    or die "connect: $!\n";
print $s "POST /v2/th/gone/blobs/uploads/?digest=$gd HTTP/1.1\r\n"
    . "Host: localhost\r\nContent-Length: " . length($gone) . "\r\n\r\n" . $gone;
close $s;

my $published = 0;
for (1 .. 50) {
    $published = $t->req('HEAD', "/v2/th/gone/blobs/$gd")->{status} == 200
        and last;
    select undef, undef, undef, 0.1;
}
ok($published, 'push of a client gone during the fsync is published');
is($t->req('GET', '/v2/')->{status}, 200, 'worker still serving');

# who calls fsync(): threads of the worker, never its main thread

{
    my ($worker) = $t->pids_of_workers;
    my $trace = $t->dir . '/strace.out';
    my $pid = fork // die "fork: $!\n";

    if ($pid == 0) {
        open STDERR, '>', '/dev/null';      # "Process N detached" lines
        exec '/usr/bin/strace', '-f', '-e',
             'trace=fsync,fdatasync,sync_file_range,pwrite64', '-o', $trace,
             '-p', $worker;
        exit 127;
    }

    sleep 1;    # strace attaches

    my $traced = 'traced ' x 300_000;
    my $td = RegTest::digest($traced);
    is($t->req('POST', "/v2/th/traced/blobs/uploads/?digest=$td",
               content => $traced)->{status}, 201, 'push under strace');

    my $loc = $t->req('POST', '/v2/th/traced/blobs/uploads/')
                ->{headers}{location};
    my $chunked = 'chunked ' x 200_000;
    my $cd = RegTest::digest($chunked);
    is($t->req('PATCH', $loc, content => $chunked)->{status}, 202,
       'chunk under strace');
    is($t->req('PUT', "$loc?digest=$cd")->{status}, 201,
       'chunked push committed under strace');

    my $img = $t->push_image('th/traced', 'v1', type => 'oci',
                             config => '{"os":"linux"}',
                             layers => [ 'a traced layer' ]);
    is($img->{response}{status}, 201, 'manifest push under strace');
    is($t->req('PUT', "/v2/th/traced/manifests/v2?tag=v3&tag=v4",
               content => $img->{manifest},
               headers => { 'Content-Type' => $img->{type} })->{status},
       201, 'manifest push with tag arguments under strace');

    kill 'INT', $pid;
    waitpid $pid, 0;

    my @lines = split /\n/, RegTest::slurp($trace);

    # bytes written by the worker's main thread and by the pool's threads
    my %by = (worker => 0, threads => 0);
    for (grep { /pwrite64\(/ } @lines) {
        my ($tid, $n) = /^(\d+)\s.*=\s+(\d+)\s*$/ or next;
        $by{ $tid == $worker ? 'worker' : 'threads' } += $n;
    }
    cmp_ok($by{threads}, '>=', length($traced) / 2,
           'most of the body was hashed and written by pool threads')
        or diag "worker $by{worker} bytes, threads $by{threads} bytes";

    # hashing threads yield the CPU to the event loops: nice 19 for the
    # threads that wrote body buffers, the worker's main thread untouched
    my %hashers = map { /^(\d+)\s.*=\s+(\d+)\s*$/ && $2 >= 65536
                            ? ($1 => 1) : () }
                  grep { /pwrite64\(/ } @lines;
    delete $hashers{$worker};
    my @nice = map { thread_nice($worker, $_) } sort keys %hashers;
    ok(@nice && !grep({ !defined || $_ != 19 } @nice),
       'the pool threads that hashed run at nice 19')
        or diag "nice of the hashing threads: @{[ map { $_ // 'gone' } @nice ]}";
    is(thread_nice($worker, $worker), 0, 'the event loop keeps nice 0');

    my @syncs = grep { /(?:fsync|fdatasync)\(/ } @lines;
    my @by_worker = grep { /^(\d+)\s/ && $1 == $worker } @syncs;

    # a blob (data, directory, link) and a manifest with four tags
    cmp_ok(scalar @syncs, '>=', 3 * 3 + 4 * 2, 'the pushes synced')
        or diag join "\n", @syncs;
    is(scalar @by_worker, 0, 'no fsync() in the event loop')
        or diag join "\n", @by_worker;
}

$t->stop;
done_testing();

# a thread's nice value: field 19 of /proc/<pid>/task/<tid>/stat
sub thread_nice {
    my ($pid, $tid) = @_;
    open my $fh, '<', "/proc/$pid/task/$tid/stat" or return undef;
    my $stat = <$fh>;
    $stat =~ s/^.*\)\s+//s;       # past "pid (comm) "
    return (split ' ', $stat)[16];
}
