package Bench::Push;

# Blob pushes through the Distribution API, the way clients do them:
#
#   monolithic($base, $repo, $file, $hex)
#       POST /v2/<repo>/blobs/uploads/ (202, Location), then
#       PUT <location>?digest=sha256:<hex> with the file as body (curl -T)
#   chunked($base, $repo, [$chunk_files], $hex)
#       POST, one PATCH per file (Content-Range, curl -T), each to the
#       Location the previous answer gave, then PUT ?digest= (no body)
#   small_pushes($base, $repo, $count, $size, $seed)
#       $count blobs of $size bytes, POST + PUT each, on one keep-alive
#       connection (HTTP::Tiny)
#   chunked_stream($base, $repo, $stream, chunk => $bytes)
#       POST, PATCHes of $bytes each, PUT ?digest= (no body), all on one
#       keep-alive connection of our own (no curl): $stream is a
#       Bench::Big->concat, read piece by piece; also returns final_secs,
#       from the moment the PUT is written until its answer's head is in
#
# Each returns { secs, bytes } or { error }.
#
#   small_image($http, $base, $repo, $tag, $seed)
#       a small image: config and layer blobs (POST + PUT each), then the
#       manifest PUT by tag; dies on a failure

use strict;
use warnings;

use Digest::SHA qw(sha256_hex);
use HTTP::Tiny;
use IO::Socket::INET;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time);

use Bench::Store ();
use Bench::Util qw(run_cmd);

# HTTP::Tiny writes a request's headers and its body with two writes and
# leaves Nagle's algorithm on: on a kept-alive connection the body then
# waits for the server's delayed ACK (40 ms a request).  Real clients set
# TCP_NODELAY (curl does); so do we.
{
    no warnings 'redefine';
    my $connect = \&HTTP::Tiny::Handle::connect;

    *HTTP::Tiny::Handle::connect = sub {
        my $handle = $connect->(@_);
        setsockopt($handle->{fh}, IPPROTO_TCP, TCP_NODELAY, 1);
        return $handle;
    };
}

sub http { _http() }

sub _http {
    return HTTP::Tiny->new(keep_alive => 1, max_redirect => 0,
                           timeout => 120, agent => 'ngx-registry-bench/1');
}

# an absolute URL for a Location header (absolute or a path)
sub _absolute {
    my ($base, $location) = @_;
    return $location =~ m{^https?://} ? $location : "$base$location";
}

sub _with_digest {
    my ($url, $hex) = @_;
    return $url . ($url =~ /\?/ ? '&' : '?') . "digest=sha256:$hex";
}

# POST: the upload's absolute URL, or dies
sub start_upload {
    my ($http, $base, $repo) = @_;

    my $r = $http->request('POST', "$base/v2/$repo/blobs/uploads/",
                           { headers => { 'Content-Length' => 0 } });

    die "POST uploads: $r->{status} $r->{content}\n"
        unless $r->{status} == 202 && $r->{headers}{location};

    return _absolute($base, $r->{headers}{location});
}

# curl sending $file with $method to $url; returns (status, headers text)
sub _curl_send {
    my ($method, $url, $file, @headers) = @_;

    my @cmd = ('curl', '-sS', '-X', $method, '-T', $file, '-o', '/dev/null',
               '-D', '-', '-H', 'Expect:',
               '-H', 'Content-Type: application/octet-stream');
    push @cmd, '-H', $_ for @headers;

    my ($rc, $out, $err) = run_cmd([@cmd, $url], timeout => 600);
    die "curl $method: exit $rc: $err\n" if $rc;

    my ($status) = $out =~ m{^HTTP/\S+ (\d+)}m;
    return ($status // 0, $out);
}

sub monolithic {
    my ($base, $repo, $file, $hex) = @_;

    my $t0 = time;
    my $ok = eval {
        my $loc = start_upload(_http(), $base, $repo);
        my ($status, $head) = _curl_send('PUT', _with_digest($loc, $hex),
                                         $file);
        die "PUT: $status\n$head" unless $status == 201;
        1;
    };

    return { error => $@ } unless $ok;
    return { secs => time - $t0, bytes => -s $file };
}

sub chunked {
    my ($base, $repo, $files, $hex) = @_;

    my $t0 = time;
    my $bytes = 0;

    my $ok = eval {
        my $http = _http();
        my $loc = start_upload($http, $base, $repo);

        for my $f (@$files) {
            my $size = -s $f;
            my $range = sprintf 'Content-Range: %d-%d', $bytes,
                                $bytes + $size - 1;
            my ($status, $head) = _curl_send('PATCH', $loc, $f, $range);
            die "PATCH: $status\n$head" unless $status == 202;

            my ($next) = $head =~ /^Location:\s*(\S+)/mi;
            die "PATCH: no Location\n$head" unless $next;
            $loc = _absolute($base, $next);
            $bytes += $size;
        }

        my $r = $http->request('PUT', _with_digest($loc, $hex),
                               { headers => { 'Content-Length' => 0 } });
        die "PUT: $r->{status} $r->{content}\n" unless $r->{status} == 201;
        1;
    };

    return { error => $@ } unless $ok;
    return { secs => time - $t0, bytes => $bytes };
}

sub small_pushes {
    my ($base, $repo, $count, $size, $seed) = @_;

    my $pad = 'x' x $size;
    my @blobs = map { substr("$seed $_ " . $pad, 0, $size) } 1 .. $count;
    my @hex = map { sha256_hex($_) } @blobs;

    my $http = _http();
    my $t0 = time;

    for my $i (0 .. $#blobs) {
        my $loc = eval { start_upload($http, $base, $repo) }
            or return { error => $@ };

        my $r = $http->request('PUT', _with_digest($loc, $hex[$i]),
            { headers => { 'Content-Type' => 'application/octet-stream' },
              content => $blobs[$i] });

        return { error => "PUT #$i: $r->{status} $r->{content}" }
            unless $r->{status} == 201;
    }

    return { secs => time - $t0, bytes => $count * $size, count => $count };
}

# ---- a small image, for the background pushers ----

sub _put_blob {
    my ($http, $base, $repo, $bytes) = @_;

    my $hex = sha256_hex($bytes);
    my $loc = start_upload($http, $base, $repo);
    my $r = $http->request('PUT', _with_digest($loc, $hex),
        { headers => { 'Content-Type' => 'application/octet-stream' },
          content => $bytes });

    die "PUT blob: $r->{status} $r->{content}\n" unless $r->{status} == 201;
    return [$hex, length $bytes];
}

sub small_image {
    my ($http, $base, $repo, $tag, $seed) = @_;

    my $config = '{"architecture":"amd64","os":"linux","rootfs":{"type":'
               . '"layers","diff_ids":[]},"config":{"Labels":{"seed":"'
               . $seed . '"}}}';
    my $layer = substr("$seed " . ('x' x 4096), 0, 4096);

    my $manifest = Bench::Store::image_manifest(
        config => _put_blob($http, $base, $repo, $config),
        layers => [ _put_blob($http, $base, $repo, $layer) ]);

    my $r = $http->request('PUT', "$base/v2/$repo/manifests/$tag",
        { headers => { 'Content-Type' => Bench::Store::OCI_MANIFEST },
          content => $manifest });

    die "PUT manifest $tag: $r->{status} $r->{content}\n"
        unless $r->{status} == 201;
}

# ---- a chunked push on a connection of our own ----

my $PIECE = 8 * 1024 * 1024;    # bytes read from the stream at a time

sub _connect {
    my ($base) = @_;

    my ($host, $port) = $base =~ m{^http://([^/:]+):(\d+)}
        or die "not an http URL: $base\n";
    my $sock = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port,
                                     Proto => 'tcp', Timeout => 30)
        or die "connect $host:$port: $@\n";
    setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);
    binmode $sock;

    return { sock => $sock, buf => '', host => "$host:$port" };
}

sub _write_all {
    my ($c, $data) = @_;

    my ($off, $len) = (0, length $data);
    while ($off < $len) {
        my $n = syswrite($c->{sock}, $data, $len - $off, $off);
        next if !defined $n && $!{EINTR};
        die "write: $!\n" unless defined $n;
        $off += $n;
    }
}

sub _fill {
    my ($c, $timeout) = @_;

    my $rin = '';
    vec($rin, fileno($c->{sock}), 1) = 1;
    select(my $rout = $rin, undef, undef, $timeout) > 0
        or die "no answer in $timeout s\n";

    my $n = sysread($c->{sock}, $c->{buf}, 65536, length $c->{buf});
    die 'read: ' . (defined $n ? 'connection closed' : $!) . "\n" unless $n;
}

# one answer: (status, { lowercase header => value }, body, time the head
# was complete)
sub _read_answer {
    my ($c, $timeout) = @_;

    $timeout ||= 600;

    my $end;
    _fill($c, $timeout) while ($end = index($c->{buf}, "\r\n\r\n")) < 0;
    my $at = time;

    my $head = substr($c->{buf}, 0, $end + 4, '');
    my ($status) = $head =~ m{^HTTP/1\.[01] (\d{3})} or die "bad answer\n";
    my %h;
    $h{lc $1} = $2 while $head =~ /^([^:\r\n]+):[ \t]*([^\r\n]*)\r$/mg;

    my $body = '';
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        while (1) {
            my $eol;
            _fill($c, $timeout) while ($eol = index($c->{buf}, "\r\n")) < 0;
            my $size = hex substr($c->{buf}, 0, $eol + 2, '');
            _fill($c, $timeout) while length $c->{buf} < $size + 2;
            $body .= substr($c->{buf}, 0, $size + 2, '');
            substr($body, -2) = '';
            last unless $size;    # no trailers: "0\r\n\r\n"
        }
    } else {
        my $len = $h{'content-length'} // 0;
        _fill($c, $timeout) while length $c->{buf} < $len;
        $body = substr($c->{buf}, 0, $len, '');
    }

    return ($status, \%h, $body, $at);
}

# the request target of a Location (an absolute URL or a path)
sub _target {
    my ($location) = @_;
    return $location =~ m{^https?://[^/]+(/.*)$} ? $1 : $location;
}

sub _min { $_[0] < $_[1] ? $_[0] : $_[1] }

sub chunked_stream {
    my ($base, $repo, $stream, %o) = @_;

    local $SIG{PIPE} = 'IGNORE';

    my $chunk = $o{chunk} || 64 * 1024 * 1024;
    my $size = $stream->{size};
    my ($bytes, $final) = (0, undef);
    my $t0 = time;

    my $ok = eval {
        my $c = _connect($base);

        _write_all($c, "POST /v2/$repo/blobs/uploads/ HTTP/1.1\r\n"
                       . "Host: $c->{host}\r\nContent-Length: 0\r\n\r\n");
        my ($status, $h, $body) = _read_answer($c, 60);
        die "POST uploads: $status $body\n"
            unless $status == 202 && $h->{location};
        my $loc = _target($h->{location});

        while ($bytes < $size) {
            my $len = _min($chunk, $size - $bytes);

            _write_all($c, "PATCH $loc HTTP/1.1\r\nHost: $c->{host}\r\n"
                . "Content-Type: application/octet-stream\r\n"
                . sprintf("Content-Range: %d-%d\r\n", $bytes,
                          $bytes + $len - 1)
                . "Content-Length: $len\r\n\r\n");

            for (my $off = 0; $off < $len; ) {
                my $piece = $stream->{read}->($bytes + $off,
                                              _min($PIECE, $len - $off));
                _write_all($c, $piece);
                $off += length $piece;
            }

            ($status, $h, $body) = _read_answer($c);
            die "PATCH at $bytes: $status $body\n"
                unless $status == 202 && $h->{location};
            $loc = _target($h->{location});
            $bytes += $len;
        }

        _write_all($c, 'PUT ' . _with_digest($loc, $stream->{hex})
                       . " HTTP/1.1\r\nHost: $c->{host}\r\n"
                       . "Content-Length: 0\r\n\r\n");
        my $sent = time;

        ($status, $h, $body, my $at) = _read_answer($c);
        die "PUT: $status $body\n" unless $status == 201;
        $final = $at - $sent;
        close $c->{sock};
        1;
    };

    return { error => $@ } unless $ok;
    return { secs => time - $t0, bytes => $bytes, final_secs => $final };
}

1;
