exports.up = (pgm) => {
  pgm.addColumn('products', { price_cents: { type: 'integer', notNull: true, default: 0 } });
};

exports.down = (pgm) => {
  pgm.dropColumn('products', 'price_cents');
};
