

if __name__ == "__main__":
    unittest.main()
