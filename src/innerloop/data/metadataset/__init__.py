"""Meta-Dataset without TensorFlow: read its TFRecord sources, sample its episodes, write its layout.

    from innerloop.data.metadataset import RecordSource
    source = RecordSource("/records/omniglot", image_size=84)       # dataset_spec.json + {id}.tfrecords
    for episode in source.episodes("train", count=100, seed=0):     # variable ways and shots
        episode.support_x, episode.support_y, episode.query_x, episode.query_y   # uint8 NCHW, int64 0..ways-1

    sampler = source.sampler("test", seed=1, ways=5, shots=1, query=15)   # fixed 5-way 1-shot
    episode = source.episode(sampler.sample())

Modules, one job each: :mod:`.crc` (CRC-32C), :mod:`.example` (``tf.train.Example`` wire format),
:mod:`.records` (TFRecord framing, offset index, random access), :mod:`.spec` (``dataset_spec.json``),
:mod:`.sampler` (the episode sampler), :mod:`.reader` (episodes from a source folder), :mod:`.convert`
(``innerloop data to-records``: Omniglot, MNIST, CIFAR-10 into this layout).
"""

from innerloop.data.metadataset.crc import crc32c, masked_crc32c
from innerloop.data.metadataset.example import decode_example, decode_features, encode_example, encode_features
from innerloop.data.metadataset.reader import Episode, RecordSource
from innerloop.data.metadataset.records import RecordFile, index_records, iter_records, write_records
from innerloop.data.metadataset.sampler import EpisodeConfig, EpisodeDescription, EpisodeSampler
from innerloop.data.metadataset.spec import DatasetSpec, load_spec, parse_spec, split_name, write_spec

__all__ = ["crc32c", "masked_crc32c", "encode_example", "encode_features", "decode_example", "decode_features",
           "RecordFile", "index_records", "iter_records", "write_records", "DatasetSpec", "load_spec", "parse_spec",
           "write_spec", "split_name", "EpisodeConfig", "EpisodeDescription", "EpisodeSampler", "Episode",
           "RecordSource"]
