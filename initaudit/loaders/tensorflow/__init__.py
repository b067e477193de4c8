"""TensorFlow formats read without TensorFlow: tf.train checkpoints, SavedModel, TFLite."""
